package process

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openPty opens a pseudo-terminal from the devpts instance of ptmx. The
// agent takes the pty from the container's own devpts (its /dev/pts/ptmx)
// when it has one, so the slave is visible inside the container as with
// runc; the slave is opened from the master (TIOCGPTPEER), never by a path
// that the container could have changed. The master stays in non-blocking
// mode so its reads honour deadlines.
func openPty(ptmx string) (master, slave *os.File, err error) {
	master, err = os.OpenFile(ptmx, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", ptmx, err)
	}
	defer func() {
		if err != nil {
			master.Close()
		}
	}()
	rc, err := master.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("pty master of %s: %w", ptmx, err)
	}
	var sfd uintptr
	var ierr error
	cerr := rc.Control(func(fd uintptr) {
		if ierr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ierr != nil {
			ierr = fmt.Errorf("unlock pty: %w", ierr)
			return
		}
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
		if errno != 0 {
			ierr = fmt.Errorf("open pty slave (TIOCGPTPEER): %w", errno)
			return
		}
		sfd = r
	})
	if cerr != nil || ierr != nil {
		return nil, nil, fmt.Errorf("pty from %s: %w", ptmx, firstErr(cerr, ierr))
	}
	return master, os.NewFile(sfd, "pty-slave"), nil
}

// resizePty sets the terminal size of the pty whose master is f.
func resizePty(f *os.File, width, height uint32) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("resize pty: %w", err)
	}
	ws := &unix.Winsize{Col: uint16(width), Row: uint16(height)}
	var ierr error
	if err := rc.Control(func(fd uintptr) { ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, ws) }); err != nil {
		return fmt.Errorf("resize pty: %w", err)
	}
	if ierr != nil {
		return fmt.Errorf("resize pty to %dx%d: %w", width, height, ierr)
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
