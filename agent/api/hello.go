package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Hello is what the agent writes on its port, once, before the channel's
// yamux session: it says the agent is up and serving, without the host
// starting a session. A host that boots a VM ahead of its use (the warm
// pool) waits for it without reading it (PeekHello), so that whoever takes
// the connection over later reads it like a host that booted the VM
// itself (ReadHello) and starts the one session the agent serves.
const Hello = "msb-agent\n"

// WriteHello is the agent's side. A virtio-console port blocks the write
// until a host end is connected.
func WriteHello(w io.Writer) error {
	if _, err := io.WriteString(w, Hello); err != nil {
		return fmt.Errorf("agent hello: %w", err)
	}
	return nil
}

// ReadHello reads the agent's hello from conn, by deadline.
func ReadHello(conn net.Conn, deadline time.Time) error {
	if err := conn.SetReadDeadline(deadline); err != nil {
		return err
	}
	defer conn.SetReadDeadline(time.Time{}) //nolint:errcheck // cleared on a conn that took a deadline
	b := make([]byte, len(Hello))
	if _, err := io.ReadFull(conn, b); err != nil {
		return fmt.Errorf("agent hello: %w", err)
	}
	if !bytes.Equal(b, []byte(Hello)) {
		return fmt.Errorf("agent hello: got %q, want %q", b, Hello)
	}
	return nil
}

// PeekHello waits, by deadline, until the agent's hello can be read from
// conn, and leaves it there.
func PeekHello(conn *net.UnixConn, deadline time.Time) error {
	if err := conn.SetReadDeadline(deadline); err != nil {
		return err
	}
	defer conn.SetReadDeadline(time.Time{}) //nolint:errcheck // cleared on a conn that took a deadline
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	b := make([]byte, len(Hello))
	for {
		var n int
		var rerr error
		err = rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), b, unix.MSG_PEEK|unix.MSG_DONTWAIT)
			return !errors.Is(rerr, syscall.EAGAIN)
		})
		switch {
		case err != nil:
			return fmt.Errorf("agent hello: %w", err)
		case rerr != nil:
			return fmt.Errorf("agent hello: %w", rerr)
		case n == 0:
			return fmt.Errorf("agent hello: %w", io.EOF)
		case n < len(b) && bytes.Equal(b[:n], []byte(Hello)[:n]):
			// Part of it: the rest follows at once. The socket stays
			// readable, so wait a little instead of polling it.
			if time.Now().After(deadline) {
				return fmt.Errorf("agent hello: %w", os.ErrDeadlineExceeded)
			}
			time.Sleep(time.Millisecond)
		case !bytes.Equal(b[:n], []byte(Hello)[:n]):
			return fmt.Errorf("agent hello: got %q, want %q", b[:n], Hello)
		default:
			return nil
		}
	}
}
