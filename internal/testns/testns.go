// Package testns runs test code in namespaces of its own, so that what a
// test mounts never reaches the host's mount table.
package testns

import (
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// InMountNS runs fn on a thread in a private mount namespace of its own;
// the thread is dropped afterwards. It skips the test without root.
func InMountNS(t *testing.T, fn func()) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			t.Errorf("make / private: %v", err)
			return
		}
		fn()
	}()
	<-done
}
