package vm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// vmm supervises one VMM process and the helpers it needs (virtiofsd).
// Each runs in its own process group so a kill reaches its children.
type vmm struct {
	name    string
	cmd     *exec.Cmd
	helpers []*exec.Cmd
	// logs are the files whose tails explain an unexpected end.
	logs []string
	// explain, when set, turns the exit into a better error (msb-vmm's
	// error file).
	explain func() error
	done    chan struct{}
	waitErr error
	// log is the capped log (vmm.log) every process of it writes to.
	log *cappedFile
}

// VMMLogMax bounds vmm.log: the VMM's and its helpers' output, which a
// guest may provoke.
const VMMLogMax = 256 << 10

// start launches the VMM with stdout and stderr in logPath.
func (v *vmm) start(logPath string, dieWithParent bool) error {
	if err := v.startLogged(v.cmd, logPath, dieWithParent); err != nil {
		v.killHelpers()
		return fmt.Errorf("start %s: %w", v.name, err)
	}
	v.done = make(chan struct{})
	go func() {
		v.waitErr = v.cmd.Wait()
		v.killHelpers()
		close(v.done)
	}()
	return nil
}

// startLogged starts cmd with its output in the capped log at logPath (one
// for the VMM and its helpers), in its own process group.
func (v *vmm) startLogged(cmd *exec.Cmd, logPath string, dieWithParent bool) error {
	if v.log == nil {
		f, err := createCapped(logPath, VMMLogMax)
		if err != nil {
			return fmt.Errorf("open log: %w", err)
		}
		v.log = f
		v.logs = append(v.logs, logPath)
	}
	// Not the file itself: exec copies from a pipe, and the log stays
	// capped whatever the process writes.
	cmd.Stdout, cmd.Stderr = v.log, v.log
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{} // the namespaces, if any, are the caller's
	}
	cmd.SysProcAttr.Setpgid = true
	if dieWithParent {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	return cmd.Start()
}

// addHelper starts a helper process the VMM depends on.
func (v *vmm) addHelper(cmd *exec.Cmd, logPath string, dieWithParent bool) error {
	if err := v.startLogged(cmd, logPath, dieWithParent); err != nil {
		return fmt.Errorf("start %s: %w", filepath.Base(cmd.Path), err)
	}
	v.helpers = append(v.helpers, cmd)
	return nil
}

func (v *vmm) killHelpers() {
	for _, h := range v.helpers {
		killGroup(h)
		// virtiofsd ends by itself once the VMM is gone; reap it without
		// blocking the VMM's own waiter for long.
		go h.Wait() //nolint:errcheck
	}
}

func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// kill ends the VMM and its helpers and waits until it is reaped.
func (v *vmm) kill() {
	if v.done == nil {
		v.killHelpers()
		return
	}
	killGroup(v.cmd)
	<-v.done
}

// pids are the VMM's and its helpers' process ids.
func (v *vmm) pids() []int {
	pids := []int{v.cmd.Process.Pid}
	for _, h := range v.helpers {
		pids = append(pids, h.Process.Pid)
	}
	return pids
}

// exited reports whether the VMM has ended.
func (v *vmm) exited() bool {
	select {
	case <-v.done:
		return true
	default:
		return false
	}
}

// endError describes why the VMM ended, with the tails of its logs. It
// must only be called once done is closed.
func (v *vmm) endError() error {
	status := "exited"
	if v.waitErr != nil {
		status = v.waitErr.Error()
	}
	if v.explain != nil {
		if err := v.explain(); err != nil {
			return fmt.Errorf("%s (%s): %w", v.name, status, err)
		}
	}
	return fmt.Errorf("%s ended (%s)%s", v.name, status, v.tails())
}

func (v *vmm) tails() string {
	var b bytes.Buffer
	for _, l := range v.logs {
		if t := logTail(l, 2048); t != "" {
			fmt.Fprintf(&b, "\n--- %s (tail) ---\n%s", filepath.Base(l), t)
		}
	}
	return b.String()
}

// logTail returns up to n bytes from the end of a file.
func logTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := st.Size() - n
	if off < 0 {
		off = 0
	}
	buf, err := io.ReadAll(io.NewSectionReader(f, off, n))
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(buf))
}

// waitFile polls until path exists, the VMM ends or the deadline passes.
func waitFile(path string, deadline time.Time, done <-chan struct{}) error {
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear in time", path)
		}
		select {
		case <-done:
			return errVMMEnded
		case <-time.After(5 * time.Millisecond):
		}
	}
}

var errVMMEnded = errors.New("VMM ended")
