package process

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// A container with its own PID namespace: its init process is cloned with
// CLONE_NEWPID (PID 1 inside, its agent-visible pid outside, which is what
// Pid, Signal and the reaper use). Its /proc must be a proc instance of that
// namespace, which only a process inside it can mount, so the init's setup
// stage makes the container's proc mounts (and the masks and read-only binds
// under them) before it enters the root: in its own mount namespace when it
// has one, else in the VM's, where the agent sees and later unmounts them.
// Execs join the namespace: the agent forks them from a thread whose
// pid_ns_for_children was set to the init's.

// NSMount kinds.
const (
	// NSMountProc mounts proc on Target.
	NSMountProc = "proc"
	// NSMountMask hides Target: an empty read-only tmpfs over a directory,
	// /dev/null over a file; a missing Target is skipped.
	NSMountMask = "mask"
	// NSMountReadonly binds Target onto itself read-only; a missing Target
	// is skipped.
	NSMountReadonly = "readonly"
)

// NSMount is a mount the init's setup stage makes inside its new PID
// namespace, before it enters the root. Target is an absolute path as the agent
// sees it (inside the container root).
type NSMount struct {
	Kind   string  `json:"kind"`
	Target string  `json:"target"`
	Flags  uintptr `json:"flags,omitempty"`
	Data   string  `json:"data,omitempty"`
}

// inPIDNamespace runs fork on a thread whose children are born in the PID
// namespace ns, then puts the thread back in the agent's. A thread that
// cannot be put back is never unlocked, so it dies with its goroutine.
func inPIDNamespace(ns *os.File, fork func() error) error {
	self, err := os.Open("/proc/self/ns/pid")
	if err != nil {
		return fmt.Errorf("open the agent's PID namespace: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		defer self.Close()
		runtime.LockOSThread()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWPID); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("join the container's PID namespace: %w", err)
			return
		}
		ferr := fork()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWPID); err != nil {
			// Stay locked: the thread exits with this goroutine.
			done <- errors.Join(ferr, fmt.Errorf("return to the agent's PID namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// doNSMounts makes the setup stage's mounts, in order; on failure it
// detaches what it made.
func doNSMounts(mounts []NSMount) (err error) {
	var made []string
	defer func() {
		if err != nil {
			for i := len(made) - 1; i >= 0; i-- {
				unix.Unmount(made[i], unix.MNT_DETACH) //nolint:errcheck // best effort
			}
		}
	}()
	for _, m := range mounts {
		ok, err := doNSMount(m)
		if err != nil {
			return fmt.Errorf("%s mount on %q: %w", m.Kind, m.Target, err)
		}
		if ok {
			made = append(made, m.Target)
		}
	}
	return nil
}

func doNSMount(m NSMount) (bool, error) {
	if !filepath.IsAbs(m.Target) || strings.Contains(m.Target, "/../") {
		return false, fmt.Errorf("bad target")
	}
	switch m.Kind {
	case NSMountProc:
		return true, unix.Mount("proc", m.Target, "proc", m.Flags, m.Data)
	case NSMountMask:
		st, err := os.Stat(m.Target)
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if st.IsDir() {
			return true, unix.Mount("tmpfs", m.Target, "tmpfs", unix.MS_RDONLY, "size=0")
		}
		return true, unix.Mount(os.DevNull, m.Target, "", unix.MS_BIND, "")
	case NSMountReadonly:
		if _, err := os.Stat(m.Target); errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		if err := unix.Mount(m.Target, m.Target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return false, err
		}
		var st unix.Statfs_t
		if err := unix.Statfs(m.Target, &st); err != nil {
			return true, err
		}
		flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY)
		for sf, mf := range map[int64]uintptr{
			unix.ST_NOSUID: unix.MS_NOSUID, unix.ST_NODEV: unix.MS_NODEV, unix.ST_NOEXEC: unix.MS_NOEXEC,
			unix.ST_NOATIME: unix.MS_NOATIME, unix.ST_NODIRATIME: unix.MS_NODIRATIME, unix.ST_RELATIME: unix.MS_RELATIME,
		} {
			if st.Flags&sf != 0 {
				flags |= mf
			}
		}
		return true, unix.Mount("", m.Target, "", flags, "")
	}
	return false, fmt.Errorf("unknown kind")
}
