// Package sockpair gives tests a connected pair of unix stream sockets:
// kernel buffers and blocking writes as on a VMM's socket, unlike
// net.Pipe, and file descriptors to pass as a real one would be.
package sockpair

import (
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// New returns both ends, closed when the test ends.
func New(t testing.TB) (a, b *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}
