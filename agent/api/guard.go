package api

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// The host trusts nothing the guest sends, and hashicorp/yamux v0.1.2
// was written for peers that trust each other: it starts a goroutine per
// incoming ping (each living up to ConnectionWriteTimeout when the peer
// stops reading), and keeps up to AcceptBacklog streams the peer opened,
// each with a full receive window, for an Accept the host never calls.
// The host needs neither: it opens every stream and never pings, and the
// guest's session (keepalives off, Serve only accepts) never sends a SYN.
// So guard, a net.Conn below the host's session, reads the frame headers
// as they pass and ends the channel on the first frame the guest has no
// business sending: a ping, a SYN (a stream the guest opens), a frame
// type or version yamux does not know, or data longer than any stream's
// window. yamux then does no work per hostile frame, and what it buffers
// is bounded by what the host opened: MaxStreamWindowSize (256 KiB, the
// least yamux allows) per stream, enforced by yamux itself, which ends
// the session on a frame past the window.
//
// guard also puts a deadline on each write: yamux's one sender writes to
// the connection without any, so a guest that stops reading would hold it
// (and every call waiting behind it) forever. Past the deadline the write
// fails and yamux ends the session; the VM is then given up (vm.VM kills
// its VMM when its channel ends).
//
// Replacing yamux (libp2p's fork bounds pings) would change stream close
// semantics the stdio and port-forward code rely on, for the same result.

// yamux's frame header (its spec.md): version, type, flags, stream id,
// length; only data frames carry a body, of that length.
const (
	frameHeaderSize = 12
	frameData       = 0
	framePing       = 2
	frameGoAway     = 3
	frameSYN        = 1
)

// ErrProtocol is why the host ended a channel on which the guest broke
// the protocol.
var ErrProtocol = errors.New("agent channel protocol violation")

type guard struct {
	net.Conn
	timeout time.Duration
	maxData uint32
	// in follows the frames the guest sends; only yamux's receive loop
	// reads.
	in *frames

	mu  sync.Mutex
	err error
}

func newGuard(c net.Conn, timeout time.Duration, maxData uint32) *guard {
	g := &guard{Conn: c, timeout: timeout, maxData: maxData}
	g.in = newFrames(frameHeaderSize, g.check)
	return g
}

func (g *guard) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	if ferr := g.in.feed(p[:n]); ferr != nil {
		g.fail(ferr)
		g.Conn.Close()
		return 0, ferr
	}
	return n, err
}

// check passes the frames an honest guest sends; only data frames have
// a body.
func (g *guard) check(h []byte) (uint32, error) {
	version, typ := h[0], h[1]
	flags := binary.BigEndian.Uint16(h[2:4])
	length := binary.BigEndian.Uint32(h[8:12])
	switch {
	case version != 0 || typ > frameGoAway:
		return 0, fmt.Errorf("%w: frame version %d type %d", ErrProtocol, version, typ)
	case typ == framePing:
		return 0, fmt.Errorf("%w: the guest sent a ping", ErrProtocol)
	case flags&frameSYN != 0:
		return 0, fmt.Errorf("%w: the guest opened a stream", ErrProtocol)
	case typ == frameData && length > g.maxData:
		return 0, fmt.Errorf("%w: %d-byte data frame, beyond any window", ErrProtocol, length)
	case typ == frameData:
		return length, nil
	}
	return 0, nil
}

func (g *guard) Write(p []byte) (int, error) {
	if err := g.Conn.SetWriteDeadline(time.Now().Add(g.timeout)); err != nil {
		return 0, err
	}
	n, err := g.Conn.Write(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		g.fail(fmt.Errorf("the guest read nothing for %s", g.timeout))
	}
	return n, err
}

func (g *guard) fail(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err == nil {
		g.err = err
	}
}

// failure says why the guard ended the channel; nil if it did not.
func (g *guard) failure() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}
