package pool

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Each VM of the pool has a mount namespace of its own, a slave of the
// pool's, holding its share; its VMM and file server are started there,
// so that their own namespaces (copies of it) hold no other VM's share:
// once that VM is claimed, the binds its shim makes below its share would
// otherwise reach them too. The pool keeps the namespace's file to work
// in it later (a copy of the share for the claimant, unmounting it).

// inNewMountNS runs fn on a thread of its own in a new mount namespace,
// and returns the namespace's file.
func inNewMountNS(fn func() error) (*os.File, error) {
	var ns *os.File
	err := onThread(func() error {
		if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
			return fmt.Errorf("new mount namespace: %w", err)
		}
		if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("make the VM's mount namespace a slave of the pool's: %w", err)
		}
		f, err := os.Open("/proc/thread-self/ns/mnt")
		if err != nil {
			return err
		}
		if err := fn(); err != nil {
			f.Close()
			return err
		}
		ns = f
		return nil
	})
	return ns, err
}

// inMountNS runs fn on a thread of its own in the mount namespace ns.
func inMountNS(ns *os.File, fn func() error) error {
	return onThread(func() error {
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			return fmt.Errorf("unshare fs: %w", err)
		}
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNS); err != nil {
			return fmt.Errorf("enter the VM's mount namespace: %w", err)
		}
		return fn()
	})
}

// onThread runs fn on a locked thread that is thrown away afterwards: a
// namespace it changed never reaches another goroutine.
func onThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		errc <- fn()
	}()
	return <-errc
}
