package journal

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Owner is the process that made a journal's changes: its pid and start
// time (clock ticks after boot), which name one process for the life of
// the system, so a pid reused by another shim is not taken for it.
type Owner struct {
	Pid   int    `json:"pid"`
	Start uint64 `json:"start"`
}

func self() (Owner, error) {
	pid := os.Getpid()
	st, err := readStat(pid)
	if err != nil {
		return Owner{}, fmt.Errorf("journal owner: %w", err)
	}
	return Owner{Pid: pid, Start: st.start}, nil
}

// running says whether the owner is another process that still runs: the
// recorded pid, started at the recorded time, and not a zombie (a killed
// shim stays one until containerd reaps it).
func (o Owner) running() bool {
	if o.Pid <= 0 || o.Pid == os.Getpid() {
		return false
	}
	st, err := readStat(o.Pid)
	return err == nil && st.state != 'Z' && st.state != 'X' && st.start == o.Start
}

// procStat is what this package reads of /proc/PID/stat: the state (field
// 3) and the start time (field 22).
type procStat struct {
	state byte
	start uint64
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields after it start after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	const stateField, startField = 0, 22 - 3 // f[0] is field 3
	if len(f) <= startField || len(f[stateField]) != 1 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	start, err := strconv.ParseUint(f[startField], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: start time: %w", pid, err)
	}
	return procStat{state: f[stateField][0], start: start}, nil
}
