package portfwd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestListenNonexistentNetns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing")
	l, err := Listen(context.Background(), path)
	if err == nil {
		l.Close()
		t.Fatalf("Listen(%q) succeeded, want error", path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Listen(%q) error = %v, want one wrapping ENOENT", path, err)
	}
}

func TestListenSteersLoopbackConnections(t *testing.T) {
	requireSkLookup(t)
	nsPath := newNetns(t)

	l, err := Listen(context.Background(), nsPath)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			l.Close()
		}
	})

	for _, port := range []int{4321, 80} {
		exchange(t, l, nsPath, port)
	}

	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed = true

	c, err := dialInNetns(nsPath, 4321)
	if err == nil {
		c.Close()
		t.Fatal("dial 127.0.0.1:4321 after Close succeeded, want connection refused")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial 127.0.0.1:4321 after Close: %v, want connection refused", err)
	}
}

// Two listeners on one namespace: the kernel runs both programs in attach
// order and the first socket assigned wins, so the older listener gets the
// connections until it is closed, then the newer one takes over.
func TestListenTwiceFirstWins(t *testing.T) {
	requireSkLookup(t)
	nsPath := newNetns(t)

	first, err := Listen(context.Background(), nsPath)
	if err != nil {
		t.Fatalf("first Listen: %v", err)
	}
	firstClosed := false
	t.Cleanup(func() {
		if !firstClosed {
			first.Close()
		}
	})
	second, err := Listen(context.Background(), nsPath)
	if err != nil {
		t.Fatalf("second Listen: %v", err)
	}
	t.Cleanup(func() { second.Close() })

	exchange(t, first, nsPath, 8080)
	if err := first.Close(); err != nil {
		t.Fatalf("Close first: %v", err)
	}
	firstClosed = true
	exchange(t, second, nsPath, 8080)
}

// exchange dials port inside the namespace, accepts the conn from l and
// checks that it reports the dialed port and carries bytes both ways.
func exchange(t *testing.T, l *Listener, nsPath string, port int) {
	t.Helper()
	accepted := make(chan net.Conn, 1)
	acceptErr := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			acceptErr <- err
			return
		}
		accepted <- c
	}()

	client, err := dialInNetns(nsPath, port)
	if err != nil {
		t.Fatalf("dial 127.0.0.1:%d in netns: %v", port, err)
	}
	defer client.Close()

	var server net.Conn
	select {
	case server = <-accepted:
	case err := <-acceptErr:
		t.Fatalf("Accept: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatalf("no connection accepted for port %d", port)
	}
	defer server.Close()

	got, err := DialedPort(server)
	if err != nil {
		t.Fatalf("DialedPort: %v", err)
	}
	if got != port {
		t.Errorf("DialedPort = %d, want %d", got, port)
	}

	deadline := time.Now().Add(5 * time.Second)
	client.SetDeadline(deadline)
	server.SetDeadline(deadline)
	roundTrip(t, client, server, fmt.Sprintf("to server %d\n", port))
	roundTrip(t, server, client, fmt.Sprintf("to client %d\n", port))
}

func roundTrip(t *testing.T, from, to net.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(from, msg); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(to, buf); err != nil {
		t.Fatalf("read %q: %v", msg, err)
	}
	if string(buf) != msg {
		t.Errorf("read %q, want %q", buf, msg)
	}
}

func requireSkLookup(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace and load BPF programs")
	}
	if err := features.HaveProgramType(ebpf.SkLookup); err != nil {
		t.Skipf("BPF sk_lookup programs unavailable (need Linux >= 5.9 with BPF): %v", err)
	}
}

// newNetns creates a network namespace with lo up, pinned by a bind mount at
// the returned path. Cleanup unmounts it and verifies nothing of it is left
// in this process's mounts or file descriptors.
func newNetns(t *testing.T) string {
	t.Helper()
	var path string
	t.Cleanup(func() { checkNoLeftovers(t, path) })
	path = filepath.Join(t.TempDir(), "netns")

	if err := onLockedThread(func() error { return unshareAndPin(path) }); err != nil {
		t.Fatalf("create network namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(path, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", path, err)
		}
	})

	if err := setLoopbackUp(path); err != nil {
		t.Fatalf("bring lo up: %v", err)
	}
	return path
}

// unshareAndPin must run on a locked thread: it moves that thread into a new
// namespace, pins the namespace at path, and moves the thread back.
func unshareAndPin(path string) (retErr error) {
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			retErr = errors.Join(retErr, errThreadTainted{err})
		}
	}()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		return err
	}
	if err := syscall.Mount("/proc/thread-self/ns/net", path, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount: %w", err)
	}
	return nil
}

func setLoopbackUp(nsPath string) error {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	return h.LinkSetUp(lo)
}

// dialInNetns dials 127.0.0.1:port from inside the namespace at nsPath, as
// containerd's CRI port-forward does.
func dialInNetns(nsPath string, port int) (net.Conn, error) {
	var c net.Conn
	err := onLockedThread(func() (retErr error) {
		ns, err := netns.GetFromPath(nsPath)
		if err != nil {
			return err
		}
		defer ns.Close()
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			return err
		}
		defer func() {
			if err := netns.Set(orig); err != nil {
				retErr = errors.Join(retErr, errThreadTainted{err})
			}
		}()
		c, err = net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
		return err
	})
	if err != nil && c != nil {
		c.Close()
		c = nil
	}
	return c, err
}

// errThreadTainted marks a failure to restore a thread's namespace; such a
// thread must not be unlocked so that it exits with its goroutine.
type errThreadTainted struct{ err error }

func (e errThreadTainted) Error() string {
	return "restore network namespace: " + e.err.Error()
}

func (e errThreadTainted) Unwrap() error { return e.err }

// onLockedThread runs fn on a dedicated locked OS thread, so namespace
// changes never leak to other goroutines.
func onLockedThread(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := fn()
		var tainted errThreadTainted
		if !errors.As(err, &tainted) {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}

func checkNoLeftovers(t *testing.T, path string) {
	if path == "" {
		return
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Errorf("read mountinfo: %v", err)
	} else if strings.Contains(string(mounts), path) {
		t.Errorf("mount %s left behind", path)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("namespace file %s left behind (stat: %v)", path, err)
	}
	checkNoForeignNetnsFDs(t)
}

// checkNoForeignNetnsFDs fails if this process still holds a descriptor for a
// network namespace other than its own, which would keep the test namespace
// alive.
func checkNoForeignNetnsFDs(t *testing.T) {
	own, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Errorf("read own netns: %v", err)
		return
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Errorf("list fds: %v", err)
		return
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err != nil {
			continue // the fd used by ReadDir itself is gone by now
		}
		if strings.HasPrefix(target, "net:[") && target != own {
			t.Errorf("fd %s still refers to network namespace %s", fd.Name(), target)
		}
	}
}

// TestListenRefusesOwnNamespace: steering the caller's namespace would take
// every loopback connection of the host.
func TestListenRefusesOwnNamespace(t *testing.T) {
	requireSkLookup(t)
	l, err := Listen(context.Background(), "/proc/self/ns/net")
	if err == nil {
		l.Close()
		t.Fatal("Listen on the caller's own network namespace succeeded")
	}
}
