package sandbox

import (
	"context"
	"errors"
	"net"

	"github.com/containerd/log"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/shim/portfwd"
)

// CRI port-forward enters the pod's network namespace and dials
// localhost:PORT there, but the pod's servers listen in the guest. The
// shim takes every loopback TCP connection of that namespace (nothing else
// runs in it) and relays each to the same port on the guest's loopback
// over the agent channel.

// startPortForward serves the pod's network namespace. A host without BPF
// sk_lookup still runs the pod, without port-forward.
func (sb *VM) startPortForward(ctx context.Context) {
	l, err := portfwd.Listen(ctx, sb.netns)
	if err != nil {
		log.G(ctx).WithError(err).Warn("CRI port-forward into the VM is not available")
		return
	}
	sb.fwd = l
	go sb.acceptForwards(ctx, l)
}

func (sb *VM) acceptForwards(ctx context.Context, l *portfwd.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.G(ctx).WithError(err).Warn("port-forward accept")
			}
			return
		}
		go sb.forward(ctx, c)
	}
}

// forward relays one connection. When the guest cannot connect, the
// client's connection is reset, as a closed port would do.
func (sb *VM) forward(ctx context.Context, c net.Conn) {
	port, err := portfwd.DialedPort(c)
	if err != nil {
		c.Close()
		return
	}
	s, err := sb.vm.Agent.DialTCP(port)
	if err != nil {
		log.G(ctx).WithError(err).Debugf("port-forward to guest port %d", port)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) //nolint:errcheck // a reset instead of an orderly close
		}
		c.Close()
		return
	}
	api.Relay(c, s)
}

// stopPortForward stops taking connections; open ones end with the VM.
func (sb *VM) stopPortForward() {
	if sb.fwd != nil {
		sb.fwd.Close() //nolint:errcheck // detaching from a namespace that may be gone
		sb.fwd = nil
	}
}
