package sharedir

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/share"
)

// nsThread runs functions on one locked thread in a mount namespace of its
// own: a process of the test (the pool, the shim, a file server).
type nsThread chan func()

// newNSThread starts a thread in a private copy of the test's mount
// namespace, or, with from, in a copy of from's made a slave of it (a
// file server's, as msb-jail makes it).
func newNSThread(t *testing.T, from nsThread) nsThread {
	t.Helper()
	var nsFile *os.File
	if from != nil {
		from.do(t, func() {
			var err error
			if nsFile, err = os.Open("/proc/thread-self/ns/mnt"); err != nil {
				t.Error(err)
			}
		})
		defer nsFile.Close()
	}
	th := make(nsThread)
	ready := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		err := unix.Unshare(unix.CLONE_FS)
		if err == nil && nsFile != nil {
			err = unix.Setns(int(nsFile.Fd()), unix.CLONE_NEWNS)
		}
		if err == nil {
			err = unix.Unshare(unix.CLONE_NEWNS)
		}
		prop := unix.MS_PRIVATE
		if nsFile != nil {
			prop = unix.MS_SLAVE
		}
		if err == nil {
			err = unix.Mount("", "/", "", uintptr(unix.MS_REC|prop), "")
		}
		ready <- err
		for f := range th {
			f()
		}
	}()
	if err := <-ready; err != nil {
		t.Fatalf("mount namespace: %v", err)
	}
	t.Cleanup(func() { close(th) })
	return th
}

func (th nsThread) do(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	th <- func() { defer close(done); f() }
	<-done
}

func readIn(t *testing.T, th nsThread, p string) string {
	var s string
	th.do(t, func() {
		b, err := os.ReadFile(p)
		if err != nil {
			s = "error: " + err.Error()
		}
		s += string(b)
	})
	return s
}

// TestShareHandover: a share made in one mount namespace (the pool's) and
// handed over as a copy of its tmpfs to another (the shim's) serves what
// the second binds, to the first and to a file server's slave namespace
// of the first, also once the first has forgotten it; the second's unbinds
// reach them too.
func TestShareHandover(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	h := newHostTree(t)
	base := filepath.Join(t.TempDir(), "share")
	pool := newNSThread(t, nil)
	shim := newNSThread(t, nil)
	var (
		d    = New(base)
		tree *os.File
	)
	pool.do(t, func() {
		if err := d.Create(); err != nil {
			t.Fatal(err)
		}
	})
	server := newNSThread(t, pool)
	pool.do(t, func() {
		var err error
		if tree, err = d.Clone(); err != nil {
			t.Error(err)
		}
	})
	if tree == nil {
		t.FailNow()
	}
	shim.do(t, func() {
		defer tree.Close()
		if err := New(base).Adopt(tree); err != nil {
			t.Error(err)
			return
		}
		mustBind(t, New(base).Container("c1"), share.Export{Name: "m0", Source: h.file, ReadOnly: true})
	})
	served := filepath.Join(d.Served(), "c1", "m0")
	for name, th := range map[string]nsThread{"pool": pool, "file server": server} {
		if got := readIn(t, th, served); got != "host" {
			t.Errorf("%s reads %q in the served export", name, got)
		}
	}
	pool.do(t, func() {
		if err := d.Forget(); err != nil {
			t.Error(err)
		}
	})
	shim.do(t, func() {
		mustBind(t, New(base).Container("c2"), share.Export{Name: "m0", Source: h.secret, ReadOnly: true})
	})
	if got := readIn(t, server, served); got != "host" {
		t.Errorf("after the pool forgot the share, the file server reads %q in the first export", got)
	}
	later := filepath.Join(d.Served(), "c2", "m0")
	if got := readIn(t, server, later); got != "host" {
		t.Errorf("after the pool forgot the share, the file server reads %q in a later export", got)
	}
	if got := readIn(t, pool, served); got == "host" {
		t.Errorf("the pool still serves the share it forgot")
	}
	shim.do(t, func() {
		if err := New(base).Destroy(); err != nil {
			t.Error(err)
		}
	})
	if got := readIn(t, server, served); got == "host" {
		t.Errorf("the file server still reads the export the shim unbound")
	}
	if _, err := os.Stat(base); !os.IsNotExist(err) {
		t.Errorf("share directory left: %v", err)
	}
}
