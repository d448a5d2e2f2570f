package process

import (
	"fmt"
	"os"
	"strconv"
	"syscall"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/mount"
)

// A container with a user namespace: its init is cloned into a new user
// namespace (with the spec's mappings written by the agent before the
// setup stage runs) and a new mount namespace owned by it, where the setup
// stage may make its proc mounts; everything else about the root was
// mounted by the agent beforehand, in the VM's mount namespace, which the
// new one copies. A process that must enter existing namespaces (an exec;
// a container that shares another's PID namespace, and so its user
// namespace) is started through msb-nsenter, which a Go program cannot do
// itself. Rlimits above the agent's and a lower oom_score_adj need
// privileges over the VM that a user namespace's root lacks: the agent
// sets them on the child while its setup stage waits for its config.

// DefaultNSEnter is msb-nsenter on the boot disk.
const DefaultNSEnter = "/msb-nsenter"

// UsernsFD returns a user namespace with m's mappings, held by an open
// ns/user file: a child is cloned into it, stopped by ptrace at its execve
// before it runs anything, and killed once the file is open. It is the
// agent's mount.Planner.Userns, for idmapped layers.
func UsernsFD(m mount.IDMap) (*os.File, error) {
	attr := &syscall.ProcAttr{Sys: &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWUSER, UidMappings: m.UIDs, GidMappings: m.GIDs,
		Ptrace: true, Pdeathsig: unix.SIGKILL,
	}}
	pid, exitCh, err := theReaper.fork(func() (int, error) {
		return syscall.ForkExec("/proc/self/exe", []string{"msb-userns"}, attr)
	})
	if err != nil {
		return nil, fmt.Errorf("clone a user namespace: %w", err)
	}
	f, oerr := os.Open(fmt.Sprintf("/proc/%d/ns/user", pid))
	unix.Kill(pid, unix.SIGKILL) //nolint:errcheck // it exits either way
	<-exitCh                     // its stop or its end; the reaper takes the rest
	if oerr != nil {
		return nil, fmt.Errorf("open the new user namespace: %w", oerr)
	}
	return f, nil
}

// OpenNamespace opens the namespace of kind ("user", "mnt", "pid") of the
// running process p. A process that has exited fails with
// FailedPrecondition.
func (p *Process) OpenNamespace(kind string) (*os.File, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != Running {
		return nil, fmt.Errorf("%s is not running: %w", p.name(), errdefs.ErrFailedPrecondition)
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", p.pid, kind))
	if err != nil {
		return nil, fmt.Errorf("%s: open its %s namespace: %v: %w", p.name(), kind, err, errdefs.ErrFailedPrecondition)
	}
	// The pid was still ours when the file was opened if it is still ours
	// now (the pidfd pins the process, not the number).
	if err := unix.PidfdSendSignal(p.pidfd, 0, nil, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s has exited: %w", p.name(), errdefs.ErrFailedPrecondition)
	}
	return f, nil
}

// nsenterArgs sets attr up to run msb-nsenter, which joins o.JoinNS and
// execs exe; it returns the helper's path and argv. The files are dup'd
// to the child's fds 5 and up.
func nsenterArgs(o Options, exe *os.File, attr *syscall.ProcAttr) (string, []string) {
	helper := o.NSEnter
	if helper == "" {
		helper = DefaultNSEnter
	}
	argv := []string{"msb-nsenter", strconv.Itoa(len(attr.Files)), strconv.Itoa(o.UnshareNS)}
	attr.Files = append(attr.Files, exe.Fd())
	for _, f := range o.JoinNS {
		argv = append(argv, strconv.Itoa(len(attr.Files)))
		attr.Files = append(attr.Files, f.Fd())
	}
	return helper, argv
}

// setLimitsFor applies, from the agent, the rlimits and oom_score_adj of
// a process whose setup stage runs in a user namespace; the setup stage
// then gets none of them.
func setLimitsFor(pid int, p *specs.Process) error {
	for _, l := range p.Rlimits {
		res, ok := rlimitByName[l.Type]
		if !ok {
			return fmt.Errorf("unknown rlimit %q", l.Type)
		}
		if err := unix.Prlimit(pid, res, &unix.Rlimit{Cur: l.Soft, Max: l.Hard}, nil); err != nil {
			return fmt.Errorf("set %s to soft %d hard %d: %w", l.Type, l.Soft, l.Hard, err)
		}
	}
	if p.OOMScoreAdj != nil {
		v := []byte(strconv.Itoa(*p.OOMScoreAdj))
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid), v, 0); err != nil {
			return fmt.Errorf("set oom_score_adj to %d: %w", *p.OOMScoreAdj, err)
		}
	}
	return nil
}
