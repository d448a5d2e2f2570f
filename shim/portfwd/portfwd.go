// Package portfwd lets the shim serve CRI port-forward for pods whose servers
// run inside a microVM.
//
// containerd's CRI implements port-forward by entering the pod's network
// namespace and dialing localhost:PORT. With msb nothing listens in that
// namespace, so the shim needs a single socket there that receives every
// loopback TCP connection whatever the port, and it must learn which port the
// client dialed so the relay can reach the same port inside the VM.
//
// A BPF sk_lookup program attached to the namespace steers such connections
// to one listener. Because the kernel only changes which socket receives the
// connection, not its addresses, the accepted socket's local address is the
// address the client dialed, so getsockname reveals the port.
package portfwd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netns"
)

// Listener receives the loopback TCP connections of one network namespace.
type Listener struct {
	ln   *net.TCPListener
	link link.Link
	prog *ebpf.Program
	sock *ebpf.Map
}

// Listen opens a TCP listener inside the network namespace at netnsPath that
// receives every TCP connection made inside that namespace to an address in
// 127.0.0.0/8, whatever the port. Conns returned by Accept have a LocalAddr
// carrying the address and port the client dialed; see DialedPort.
//
// It needs CAP_NET_ADMIN and CAP_BPF (or CAP_SYS_ADMIN) and Linux >= 5.9.
// Close detaches the program and closes everything.
func Listen(ctx context.Context, netnsPath string) (_ *Listener, retErr error) {
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", netnsPath, err)
	}
	// The link keeps its own reference to the namespace once attached.
	defer ns.Close()
	// Steering the caller's own namespace (the host's) would take every
	// loopback connection of the host.
	if self, err := netns.Get(); err == nil {
		same := self.Equal(ns)
		self.Close()
		if same {
			return nil, fmt.Errorf("network namespace %s is the shim's own: not steering its loopback", netnsPath)
		}
	}

	l := &Listener{}
	defer func() {
		if retErr != nil {
			l.Close()
		}
	}()

	if l.ln, err = listenInNetns(ctx, ns); err != nil {
		return nil, fmt.Errorf("listen in network namespace %s: %w", netnsPath, err)
	}
	if l.sock, err = newSockMap(l.ln); err != nil {
		return nil, err
	}
	if l.prog, err = newSteerProgram(l.sock); err != nil {
		return nil, err
	}
	if l.link, err = link.AttachNetNs(int(ns), l.prog); err != nil {
		return nil, fmt.Errorf("attach sk_lookup program to network namespace %s: %w", netnsPath, err)
	}
	return l, nil
}

// Accept waits for the next loopback connection made in the namespace.
func (l *Listener) Accept() (net.Conn, error) {
	return l.ln.Accept()
}

// Addr is the listener's own bound address, not an address clients dial.
func (l *Listener) Addr() net.Addr {
	return l.ln.Addr()
}

// Close detaches the program first so that no new connection is steered to a
// socket that is about to go away; later dials get connection refused again.
func (l *Listener) Close() error {
	var errs []error
	if l.link != nil {
		errs = append(errs, wrapClose("sk_lookup link", l.link.Close()))
	}
	if l.ln != nil {
		errs = append(errs, wrapClose("listener", l.ln.Close()))
	}
	if l.prog != nil {
		errs = append(errs, wrapClose("sk_lookup program", l.prog.Close()))
	}
	if l.sock != nil {
		errs = append(errs, wrapClose("socket map", l.sock.Close()))
	}
	return errors.Join(errs...)
}

func wrapClose(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("close %s: %w", what, err)
}

// DialedPort returns the port the client dialed for a conn accepted by a
// Listener.
func DialedPort(c net.Conn) (int, error) {
	addr, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok {
		return 0, fmt.Errorf("conn local address %v is %T, not a TCP address", c.LocalAddr(), c.LocalAddr())
	}
	return addr.Port, nil
}

// listenInNetns creates the listener on a throwaway goroutine: if switching
// back to the original namespace fails, that goroutine exits with its thread
// still locked, so the Go runtime kills the thread rather than reuse it in
// the wrong namespace. The caller's own thread is never switched.
func listenInNetns(ctx context.Context, ns netns.NsHandle) (*net.TCPListener, error) {
	type result struct {
		ln  *net.TCPListener
		err error
	}
	done := make(chan result, 1)
	go func() {
		ln, err := listenOnLockedThread(ctx, ns)
		done <- result{ln, err}
	}()
	r := <-done
	return r.ln, r.err
}

func listenOnLockedThread(ctx context.Context, ns netns.NsHandle) (ln *net.TCPListener, retErr error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("open current network namespace: %w", err)
	}
	defer orig.Close()

	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter network namespace: %w", err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// Keep the thread locked so it dies with this goroutine.
			retErr = errors.Join(retErr, fmt.Errorf("return to original network namespace: %w", err))
			if ln != nil {
				ln.Close()
				ln = nil
			}
			return
		}
		runtime.UnlockOSThread()
	}()

	// The socket belongs to the namespace current at creation; it stays there
	// after the thread switches back.
	var lc net.ListenConfig
	// Go listens with MPTCP by default where the kernel supports it, and an
	// MPTCP socket can neither go into a SOCKMAP nor be picked by sk_lookup.
	lc.SetMultipathTCP(false)
	l, err := lc.Listen(ctx, "tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return l.(*net.TCPListener), nil
}
