// Package boot is msb-agent as the guest's PID 1: it mounts the guest's
// own file systems, starts the reaper, finds the agent port and serves the
// API on it. PID 1 must never exit: a fatal error is logged and the VM
// rebooted, which ends it (QEMU -no-reboot, reboot=t; libkrun alike).
package boot

import (
	"context"
	"os"
	"strings"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/agent/cgroup"
	"github.com/msb-runtime/msb/agent/container"
	"github.com/msb-runtime/msb/agent/mount"
	"github.com/msb-runtime/msb/agent/process"
	"github.com/msb-runtime/msb/agent/service"
)

// Guest paths the agent owns.
const (
	CgroupRoot   = "/sys/fs/cgroup"
	CgroupParent = "/sys/fs/cgroup/msb"
	guestPath    = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Run is PID 1's main; it never returns.
func Run() {
	main := service.BootClock()
	ctx := context.Background()
	setupLogging()
	if os.Getpid() != 1 {
		log.G(ctx).Fatal("msb-agent must run as PID 1 (the guest's /init)")
	}
	process.StartReaper()
	cgroups, err := setup(ctx)
	if err != nil {
		Fatal(ctx, err)
	}
	svc := service.New(service.Config{
		Container: container.Config{
			Planner:      mount.Planner{Disks: mount.GuestDisks, Userns: process.UsernsFD},
			CgroupParent: cgroups,
			SetHostname:  true,
			Sysctl:       "/proc/sys",
		},
		Reboot: func() { Reboot(ctx) },
	})
	svc.SetBootTimes(bootTimes(main))
	serve(ctx, svc)
}

// setup mounts what the guest needs, in order. It returns the cgroup
// parent for containers ("" when cgroup2 is unavailable).
func setup(ctx context.Context) (string, error) {
	if err := mountProc(); err != nil {
		return "", err
	}
	if strings.Contains(cmdline(), "msb.debug=1") {
		log.SetLevel("debug") //nolint:errcheck // a valid level
	}
	if err := mountSys(); err != nil {
		return "", err
	}
	if err := mountDev(); err != nil {
		return "", err
	}
	if err := mountDevPts(); err != nil {
		return "", err
	}
	if err := mountTmpfs("/dev/shm", "mode=1777", unix.MS_NOSUID|unix.MS_NODEV); err != nil {
		return "", err
	}
	if err := devLinks(); err != nil {
		return "", err
	}
	fixStdio()
	for _, t := range []struct{ path, mode string }{{"/run", "mode=0755"}, {"/tmp", "mode=1777"}, {"/mnt", "mode=0755"}} {
		if err := mountTmpfs(t.path, t.mode, unix.MS_NOSUID|unix.MS_NODEV); err != nil {
			return "", err
		}
	}
	if err := mountShare(cmdline()); err != nil {
		return "", err
	}
	os.Setenv("PATH", guestPath) //nolint:errcheck // cannot fail for a valid name
	if err := loopbackUp(); err != nil {
		log.G(ctx).WithError(err).Warn("bring up lo")
	}
	return setupCgroups(ctx), nil
}

// setupCgroups mounts cgroup2 and enables the controllers containers use.
// Containers still run without cgroups if that fails.
func setupCgroups(ctx context.Context) string {
	if err := mountCgroup2(); err != nil {
		log.G(ctx).WithError(err).Error("containers will run without cgroups")
		return ""
	}
	enabled, err := cgroup.EnableControllers(CgroupRoot, cgroup.Controllers)
	if err != nil {
		log.G(ctx).WithError(err).Warn("enable cgroup controllers")
	}
	log.G(ctx).Debugf("cgroup controllers enabled: %v", enabled)
	return CgroupParent
}

// serve opens the agent port and serves the API until the channel fails,
// which leaves the VM without a purpose: it is then ended.
func serve(ctx context.Context, svc *service.Service) {
	port, err := openPort(ctx, portTimeout)
	if err != nil {
		Fatal(ctx, err)
	}
	log.G(ctx).Infof("msb-agent %s serving on %s", service.Version, port.Name())
	if err := api.WriteHello(port); err != nil {
		Fatal(ctx, err)
	}
	err = api.Serve(ctx, newPortConn(port), svc, api.Handlers{Stdio: svc.Stdio.Put, TCP: service.ForwardTCP})
	if err == nil {
		err = errChannelClosed
	}
	Fatal(ctx, err)
}

func cmdline() string {
	b, _ := os.ReadFile("/proc/cmdline")
	return string(b)
}
