package process

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The setup stage: the agent re-executed as "msb-agent exec-init" inside
// the container's cgroup and session, with the process's stdio as 0-2, its
// config pipe as fd 3 and a close-on-exec error pipe as fd 4. It does what
// must happen in the new process before execve and cannot be expressed with
// SysProcAttr (capability sets, rlimits, no_new_privs, a cgroup namespace,
// the seccomp filter),
// then execs the container's program. Any failure is written to the error
// pipe, which the agent reads until EOF: EOF with nothing read means execve
// succeeded. Credentials and capabilities are per thread in Linux, so all
// of it runs locked to one thread, the one that calls execve.
const (
	configFD = 3
	errorFD  = 4
)

// defaultPath is used to resolve the program when the process has no PATH.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// RunInit is the setup stage's main; it never returns.
func RunInit() {
	runtime.LockOSThread()
	unix.CloseOnExec(errorFD)
	// The pipes come non-blocking from the agent's os.Pipe; os.NewFile
	// would then put them in the runtime's poller, and its epoll calls may
	// be what the seccomp filter denies once it is in (the runtime then
	// dies).
	unix.SetNonblock(configFD, false) //nolint:errcheck // blocking reads work either way
	unix.SetNonblock(errorFD, false)  //nolint:errcheck
	err := runInit()
	if err == nil {
		err = fmt.Errorf("exec returned without an error")
	}
	errPipe := os.NewFile(errorFD, "error-pipe")
	fmt.Fprint(errPipe, err.Error())
	errPipe.Close()
	os.Exit(255)
}

func runInit() error {
	f := os.NewFile(configFD, "config-pipe")
	cfg, err := decodeConfig(f)
	f.Close()
	if err != nil {
		return err
	}
	return setupAndExec(cfg)
}

func setupAndExec(cfg *childConfig) error {
	p := cfg.Process
	if err := enterContainer(cfg); err != nil {
		return err
	}
	caps, err := capsFromSpec(p.Capabilities)
	if err != nil {
		return err
	}
	// runc's order for seccomp: without no_new_privs, installing a filter
	// needs CAP_SYS_ADMIN, so it goes in now, while the process still has
	// all capabilities (the profile must then allow what follows: capset,
	// setgroups, setresuid, chdir, execve...); with it, as late as possible,
	// right before execve.
	if cfg.Seccomp != nil && !p.NoNewPrivileges {
		if err := cfg.Seccomp.install(); err != nil {
			return err
		}
	}
	if err := applyBounding(caps); err != nil {
		return err
	}
	if err := setUser(p.User); err != nil {
		return err
	}
	if err := unix.Chdir(cwdOf(p)); err != nil {
		return fmt.Errorf("chdir to cwd %q: %w", cwdOf(p), err)
	}
	if err := applyCaps(caps); err != nil {
		return err
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	path, err := lookPath(p.Args[0], p.Env)
	if err != nil {
		return err
	}
	if cfg.Seccomp != nil && p.NoNewPrivileges {
		if err := cfg.Seccomp.install(); err != nil {
			return err
		}
	}
	if err := unix.Exec(path, p.Args, p.Env); err != nil {
		return fmt.Errorf("exec %q: %w", path, err)
	}
	return nil
}

// enterContainer does what needs root: namespaces, limits, entering the
// root and the working directory's creation.
func enterContainer(cfg *childConfig) error {
	p := cfg.Process
	if cfg.CgroupNS {
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return fmt.Errorf("new cgroup namespace: %w", err)
		}
	}
	if p.OOMScoreAdj != nil {
		v := []byte(strconv.Itoa(*p.OOMScoreAdj))
		if err := os.WriteFile("/proc/self/oom_score_adj", v, 0); err != nil {
			return fmt.Errorf("set oom_score_adj to %d: %w", *p.OOMScoreAdj, err)
		}
	}
	if err := setRlimits(p.Rlimits); err != nil {
		return err
	}
	// Before the seccomp filter, which may deny it (as runc does).
	if p.User.Umask != nil {
		unix.Umask(int(*p.User.Umask) & 0o777)
	} else {
		unix.Umask(0o022)
	}
	if err := doNSMounts(cfg.NSMounts); err != nil {
		return err
	}
	if err := enterRoot(cfg); err != nil {
		return err
	}
	// Like runc, create a missing working directory (as root).
	if err := os.MkdirAll(cwdOf(p), 0o755); err != nil {
		return fmt.Errorf("create cwd %q: %w", cwdOf(p), err)
	}
	return nil
}

// enterRoot makes the container's root the process's, as cfg.Enter says.
func enterRoot(cfg *childConfig) error {
	switch cfg.Enter {
	case EnterJoined:
		return nil
	case EnterPivot:
		return pivotRoot(cfg.Root)
	}
	if err := unix.Chroot(cfg.Root); err != nil {
		return fmt.Errorf("chroot to %q: %w", cfg.Root, err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir to / of %q: %w", cfg.Root, err)
	}
	return nil
}

// pivotRoot makes root the root of the process's new mount namespace, as
// runc does, and detaches the VM's mounts from it: the container's own
// mounts then stay in it, and it may make user namespaces of its own,
// which the kernel refuses to a chrooted process. root is bound onto
// itself first: the agent mounted it in the VM's namespace, and a mount
// copied into a user namespace's mount namespace is locked to its parent,
// which pivot_root refuses.
func pivotRoot(root string) error {
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make the mount namespace a slave: %w", err)
	}
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %q onto itself: %w", root, err)
	}
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("chdir to %q: %w", root, err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root to %q: %w", root, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the VM's root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir to /: %w", err)
	}
	return nil
}

func cwdOf(p *specs.Process) string {
	if p.Cwd == "" {
		return "/"
	}
	return p.Cwd
}

// setUser switches to the process's user, keeping the permitted
// capabilities so the spec's sets can be applied afterwards.
func setUser(u specs.User) error {
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set keepcaps: %w", err)
	}
	gids := make([]int, len(u.AdditionalGids))
	for i, g := range u.AdditionalGids {
		gids[i] = int(g)
	}
	if err := syscall.Setgroups(gids); err != nil {
		return fmt.Errorf("setgroups %v: %w", gids, err)
	}
	if err := syscall.Setresgid(int(u.GID), int(u.GID), int(u.GID)); err != nil {
		return fmt.Errorf("setgid %d: %w", u.GID, err)
	}
	if err := syscall.Setresuid(int(u.UID), int(u.UID), int(u.UID)); err != nil {
		return fmt.Errorf("setuid %d: %w", u.UID, err)
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("clear keepcaps: %w", err)
	}
	return nil
}

// lookPath resolves the program through the process's own PATH, inside the
// root. Errors read like Go's: exec: "x": executable file not found in $PATH.
func lookPath(name string, env []string) (string, error) {
	path := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	if err := os.Setenv("PATH", path); err != nil {
		return "", fmt.Errorf("set PATH for lookup: %w", err)
	}
	return exec.LookPath(name)
}
