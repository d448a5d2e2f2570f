package vm

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// killWait bounds how long KillNaming waits for what it killed to end.
const killWait = 5 * time.Second

// NamesDir says whether pid's command line names dir: an argument that is
// dir or a path below it, as a VMM's and its helpers' name their run
// directory. A pid reused by another process does not.
func NamesDir(pid int, dir string) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	// Each argument ends in a NUL: as a "/", dir+"/" matches dir itself
	// and every path below it, not a sibling that only starts like it.
	return bytes.Contains(bytes.ReplaceAll(b, []byte{0}, []byte{'/'}), []byte(dir+"/"))
}

// KillNaming kills every process whose command line names dir (NamesDir):
// a VM's VMM and helpers, also when the process that started them is gone.
// It waits, killWait at most, until each has ended (exited or a zombie).
func KillNaming(dir string) {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || !NamesDir(pid, dir) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		pids = append(pids, pid)
	}
	deadline := time.Now().Add(killWait)
	for _, pid := range pids {
		for time.Now().Before(deadline) && syscall.Kill(pid, 0) == nil && !zombie(pid) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// zombie says whether pid has ended and waits to be reaped (or is gone).
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] == 'Z'
}
