package cgroup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// fileWatch reports the changes of one file through inotify; the kernel
// notifies changes of cgroup event files (memory.events) this way, so a
// waiter needs no polling.
type fileWatch struct {
	f *os.File
}

// watchFile watches path. A missing file is ErrNotImplemented: for a
// cgroup file it means the controller is absent.
func watchFile(path string) (*fileWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_MODIFY|unix.IN_DELETE_SELF); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("watch %s: %w", path, errdefs.ErrNotImplemented)
		}
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	// Non-blocking, the descriptor joins Go's poller: a read parks only its
	// goroutine and a deadline interrupts it.
	return &fileWatch{f: os.NewFile(uintptr(fd), path)}, nil
}

// wait blocks until the file changes. It fails with ErrNotFound once the
// file is gone, and with os.ErrDeadlineExceeded after interrupt.
func (w *fileWatch) wait() error {
	buf := make([]byte, 4096) // room for several events, names included
	n, err := w.f.Read(buf)
	if err != nil {
		return fmt.Errorf("watch %s: %w", w.f.Name(), err)
	}
	if removed(buf[:n]) {
		return fmt.Errorf("%s was removed: %w", w.f.Name(), errdefs.ErrNotFound)
	}
	return nil
}

// interrupt ends a wait in progress, and every later one.
func (w *fileWatch) interrupt() {
	w.f.SetReadDeadline(time.Now()) //nolint:errcheck // fails only once closed
}

func (w *fileWatch) Close() error { return w.f.Close() }

// removed says whether a read of inotify events holds the end of the watch:
// the file was deleted (IN_DELETE_SELF) or the watch dropped (IN_IGNORED).
func removed(b []byte) bool {
	for len(b) >= unix.SizeofInotifyEvent {
		mask := binary.NativeEndian.Uint32(b[4:8]) // after the int32 wd
		if mask&(unix.IN_DELETE_SELF|unix.IN_IGNORED) != 0 {
			return true
		}
		size := unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(b[12:16]))
		if size > len(b) {
			return false
		}
		b = b[size:]
	}
	return false
}
