// Command msb-pool keeps VMs booted ahead of their use for msb's shims (the
// runtime option warm_pool; package pool).
//
//	msb-pool            serve until SIGTERM or SIGINT; its idle VMs die with it
//	msb-pool enabled    exit 0 when the configuration turns the pool on
//	msb-pool status     print what the running pool holds, as JSON
//
// The configuration is msb's (/opt/msb/etc/msb.toml, then $MSB_CONFIG).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/pool"
	"github.com/msb-runtime/msb/shim/sandbox"
)

// nsEnv marks the process that runs in msb-pool's own mount namespace.
const nsEnv = "MSB_POOL_MOUNT_NS"

func main() {
	cmd := ""
	if len(os.Args) > 1 {
		cmd = os.Args[1]
	}
	var err error
	switch cmd {
	case "enabled":
		err = enabled()
	case "status":
		err = status()
	case "":
		if os.Getenv(nsEnv) != "1" {
			os.Exit(inMountNS())
		}
		err = serve()
	default:
		err = fmt.Errorf("usage: %s [enabled|status]", filepath.Base(os.Args[0]))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "msb-pool: %v\n", err)
		os.Exit(1)
	}
}

func config() (pool.Config, pool.VMKey, *sandbox.Config, error) {
	c, err := sandbox.LoadConfig(nil)
	if err != nil {
		return pool.Config{}, pool.VMKey{}, nil, err
	}
	pc, key, _, err := c.WarmVM()
	return pc, key, &c, err
}

func enabled() error {
	pc, _, _, err := config()
	if err != nil {
		return err
	}
	if !pc.Enabled() {
		return errors.New("warm_pool.count is 0: the pool is off")
	}
	return nil
}

func status() error {
	pc, _, _, err := config()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := pool.GetStatus(ctx, pc.Socket)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(st)
}

// inMountNS runs msb-pool again in a mount namespace of its own (where its
// VMs' shares are mounted, out of the host's mount table), passes it the
// signals that stop it, and exits as it does. The child gets SIGTERM if
// this process dies.
func inMountNS() int {
	runtime.LockOSThread() // the child's parent-death signal follows this thread
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "msb-pool: %v\n", err)
		return 1
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), nsEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGTERM}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "msb-pool: %v\n", err)
		return 1
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return max(exit.ExitCode(), 1)
	}
	if err != nil {
		return 1
	}
	return 0
}

func serve() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	// A slave of the host's mounts: what the pool mounts stays its own.
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make the pool's mount namespace a slave of the host's: %w", err)
	}
	pc, key, c, err := config()
	if err != nil {
		return err
	}
	if !pc.Enabled() {
		log.G(ctx).Info("warm pool off (warm_pool.count is 0)")
		return nil
	}
	ln, err := listen(pc.Socket)
	if err != nil {
		return err
	}
	defer os.Remove(pc.Socket)
	if err := pool.CleanStale(); err != nil {
		log.G(ctx).WithError(err).Warn("warm pool: cleanup after an earlier msb-pool")
	}
	parent, err := pool.CgroupParent(pc.CgroupParent)
	if err != nil {
		return err
	}
	if err := pool.MakeCgroupParent(parent); err != nil {
		return err
	}
	_, _, opts, err := c.WarmVM()
	if err != nil {
		return err
	}
	log.G(ctx).WithField("count", pc.Count).WithField("vcpus", key.VCPUs).WithField("memory_mib", key.MemoryMiB).
		WithField("socket", pc.Socket).WithField("cgroup", parent).Info("warm pool serving")
	return pool.New(pc, &pool.Host{Key: key, Opts: opts, CgroupParent: parent}).Run(ctx, ln)
}

// listen makes the pool's socket, root's alone; a socket nobody serves is
// stale, one that answers belongs to another msb-pool.
func listen(socket string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(socket), 0o700); err != nil {
		return nil, err
	}
	if c, err := net.Dial("unixpacket", socket); err == nil {
		c.Close()
		return nil, fmt.Errorf("another msb-pool serves %s", socket)
	}
	_ = os.Remove(socket)
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: socket, Net: "unixpacket"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("warm pool socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	return ln, nil
}
