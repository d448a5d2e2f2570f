package process

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/mount"
)

// DefaultDrainIdle is how long output may stay silent after a process
// exited before its streams are closed anyway.
const DefaultDrainIdle = 2 * time.Second

// Options say how to start a process.
type Options struct {
	// Root is the container root the process is chrooted into.
	Root string
	Spec *specs.Process
	// Cgroup is the container's cgroup directory (O_PATH); the process is
	// cloned straight into it. nil leaves it in the agent's cgroup.
	Cgroup   *os.File
	CgroupNS bool
	// Seccomp is the container's linux.seccomp, applied to every process
	// of the container (as runc does for execs too); nil applies none.
	Seccomp *specs.LinuxSeccomp
	// Streams are the host's stdio streams by fd (0, 1, 2); absent ones
	// are /dev/null (or, with a terminal, have no counterpart).
	Streams map[int]net.Conn
	// Ptmx is where a terminal's pty comes from (the container's
	// /dev/pts/ptmx); "" means the agent's /dev/ptmx.
	Ptmx string
	// DrainIdle bounds the output drain after exit; 0 is DefaultDrainIdle.
	DrainIdle time.Duration
	// OnExit runs once the exit is recorded, before the drain (the init
	// process kills the rest of its container there).
	OnExit func(Exit)
	// NewPIDNamespace clones the process into a new PID namespace, whose
	// PID 1 it is. NSMounts are made by the setup stage before the chroot,
	// inside the PID namespace the process is born in (only an init of a
	// container with a PID namespace has them).
	NewPIDNamespace bool
	NSMounts        []NSMount
	// PIDNamespace, when set, is the PID namespace (an open ns/pid file)
	// the process is born in.
	PIDNamespace *os.File
	// Exe is the agent binary to re-exec; "" is /proc/self/exe.
	Exe string
	// Enter is how the setup stage gets into Root; EnterPivot clones a
	// new mount namespace (unless msb-nsenter unshares one).
	Enter Enter
	// UserNS clones the process into a new user namespace with these
	// mappings (an init's; with EnterPivot, the new mount namespace is
	// the user namespace's).
	UserNS *mount.IDMap
	// JoinNS are namespaces (open ns files, a user namespace before the
	// mount namespace it owns) that the process enters before its setup
	// stage, through msb-nsenter (NSEnter; "" is DefaultNSEnter), which
	// then unshares UnshareNS (clone flags).
	JoinNS    []*os.File
	UnshareNS int
	NSEnter   string
}

// inUserNS says whether the setup stage runs in a user namespace other
// than the agent's.
func (o Options) inUserNS() bool { return o.UserNS != nil || len(o.JoinNS) > 0 }

// Start starts p: the setup stage is forked into the cgroup and session,
// reads its config and execs the program; a setup or exec failure comes
// back as the error, with the streams closed.
func (p *Process) Start(o Options) (err error) {
	if err := p.claim(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			closeStreams(o.Streams) // the host reads EOF; most are closed already
			p.fail(err)
		}
	}()
	if o.Spec == nil || len(o.Spec.Args) == 0 {
		return fmt.Errorf("process has no args: %w", errdefs.ErrInvalidArgument)
	}
	filter, err := compileSeccomp(o.Seccomp)
	if err != nil {
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	pio, err := newIO(o)
	if err != nil {
		return err
	}
	pid, pidfd, exitCh, err := launch(o, pio, filter)
	if err != nil {
		pio.abort()
		return err
	}
	p.running(pid, pidfd, pio, o.Spec.Terminal)
	pio.start()
	go p.supervise(exitCh, pio, o)
	return nil
}

func closeStreams(streams map[int]net.Conn) {
	for _, c := range streams {
		c.Close()
	}
}

func newIO(o Options) (*procIO, error) {
	if !o.Spec.Terminal {
		return newPipeIO(o.Streams)
	}
	ptmx := o.Ptmx
	if ptmx == "" {
		ptmx = "/dev/ptmx"
	}
	var w, h uint
	if sz := o.Spec.ConsoleSize; sz != nil {
		w, h = sz.Width, sz.Height
	}
	return newPtyIO(ptmx, o.Streams, w, h)
}

// launch forks the setup stage, hands it its config and waits for execve.
func launch(o Options, pio *procIO, filter *seccompFilter) (pid, pidfd int, exitCh <-chan unix.WaitStatus, err error) {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return 0, -1, nil, fmt.Errorf("config pipe: %w", err)
	}
	defer cfgW.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		return 0, -1, nil, fmt.Errorf("error pipe: %w", err)
	}
	defer errR.Close()
	pid, pidfd, exitCh, err = fork(o, pio, cfgR, errW)
	cfgR.Close()
	errW.Close()
	pio.closeChild()
	if err != nil {
		return 0, -1, nil, err
	}
	cfg := &childConfig{Root: o.Root, Enter: o.Enter, Process: o.Spec, CgroupNS: o.CgroupNS, Seccomp: filter}
	cfg.NSMounts = o.NSMounts
	var werr error
	if o.inUserNS() {
		werr = setLimitsFor(pid, o.Spec)
		spec := *o.Spec
		spec.Rlimits, spec.OOMScoreAdj = nil, nil
		cfg.Process = &spec
	}
	if werr == nil {
		werr = cfg.encode(cfgW)
	}
	cfgW.Close()
	msg, _ := io.ReadAll(io.LimitReader(errR, 64<<10))
	if len(msg) == 0 && werr == nil {
		return pid, pidfd, exitCh, nil
	}
	ws := <-exitCh // the setup stage exits right after reporting
	unix.Close(pidfd)
	if len(msg) == 0 {
		return 0, -1, nil, fmt.Errorf("process setup exited with status %d before exec: %w", ExitStatus(ws), werr)
	}
	return 0, -1, nil, fmt.Errorf("%s", strings.TrimSpace(string(msg)))
}

// fork starts the agent's setup stage; the reaper owns its exit status.
func fork(o Options, pio *procIO, cfgR, errW *os.File) (int, int, <-chan unix.WaitStatus, error) {
	exe := o.Exe
	if exe == "" {
		exe = "/proc/self/exe"
	}
	pidfd := -1
	sys := &syscall.SysProcAttr{Setsid: true, Setctty: o.Spec.Terminal, Ctty: 0, PidFD: &pidfd}
	if o.NewPIDNamespace {
		sys.Cloneflags |= unix.CLONE_NEWPID
	}
	if o.Enter == EnterPivot && len(o.JoinNS) == 0 {
		sys.Cloneflags |= unix.CLONE_NEWNS
	}
	if o.UserNS != nil {
		sys.Cloneflags |= unix.CLONE_NEWUSER
		sys.UidMappings, sys.GidMappings = o.UserNS.UIDs, o.UserNS.GIDs
		sys.GidMappingsEnableSetgroups = true
		// The namespace's root, not the unmapped real root: execve keeps
		// the capabilities of the namespace's root only.
		sys.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	if o.Cgroup != nil {
		sys.UseCgroupFD = true
		sys.CgroupFD = int(o.Cgroup.Fd())
	}
	attr := &syscall.ProcAttr{
		Env:   []string{},
		Files: []uintptr{pio.child[0].Fd(), pio.child[1].Fd(), pio.child[2].Fd(), cfgR.Fd(), errW.Fd()},
		Sys:   sys,
	}
	path, argv := exe, []string{InitArgv0, InitArg}
	if len(o.JoinNS) > 0 {
		exeFile, err := os.Open(exe)
		if err != nil {
			return 0, -1, nil, fmt.Errorf("open the agent binary: %w", err)
		}
		defer exeFile.Close()
		path, argv = nsenterArgs(o, exeFile, attr)
	}
	var (
		pid    int
		exitCh <-chan unix.WaitStatus
		err    error
	)
	forkIt := func() error {
		pid, exitCh, err = theReaper.fork(func() (int, error) {
			return syscall.ForkExec(path, argv, attr)
		})
		return err
	}
	if o.PIDNamespace != nil {
		err = inPIDNamespace(o.PIDNamespace, forkIt)
		if errors.Is(err, unix.ENOMEM) { // the namespace's init has exited
			err = fmt.Errorf("%w: the container's init process has exited: %w", err, errdefs.ErrFailedPrecondition)
		}
	} else {
		err = forkIt()
	}
	if err != nil {
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
		return 0, -1, nil, fmt.Errorf("fork process setup (%s): %w", exe, err)
	}
	return pid, pidfd, exitCh, nil
}

// supervise records the exit, lets OnExit run, drains the output and
// releases Wait.
func (p *Process) supervise(exitCh <-chan unix.WaitStatus, pio *procIO, o Options) {
	ws := <-exitCh
	e := Exit{Status: ExitStatus(ws), At: time.Now()}
	p.stopped(e)
	log.L.Debugf("%s (pid %d) exited with %d", p.name(), p.Pid(), e.Status)
	if o.OnExit != nil {
		o.OnExit(e)
	}
	idle := o.DrainIdle
	if idle == 0 {
		idle = DefaultDrainIdle
	}
	pio.exited(idle)
	pio.wait()
	close(p.done)
}
