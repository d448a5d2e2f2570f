package api

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"
)

// apiGuard sits between the host's ttrpc client and the API stream.
// ttrpc's client logs, at error level, each message for a call it does
// not know and carries on, so a guest answering calls nobody made could
// have the shim, which runs as root, write log lines as fast as it sends
// 10-byte frames. apiGuard lets through one response per request the host
// sent, no larger than ttrpc accepts; anything else is a protocol
// violation that ends the channel. Every API call is unary.
type apiGuard struct {
	net.Conn
	// end ends the whole channel with why.
	end     func(error)
	in, out *frames

	mu sync.Mutex
	// pending are the calls sent and not answered yet.
	pending map[uint32]struct{}
}

// ttrpc's message header (its PROTOCOL.md): length, stream id, type,
// flags; the body follows.
const (
	ttrpcHeaderSize = 10
	ttrpcRequest    = 1
	ttrpcResponse   = 2
	// ttrpcMaxMessage is ttrpc's own limit (messageLengthMax).
	ttrpcMaxMessage = 4 << 20
	// maxPending bounds the calls a guest may leave unanswered: far more
	// than the host has in flight (a wait per process, one per container
	// for OOM, a few control calls).
	maxPending = 1 << 16
)

func newAPIGuard(c net.Conn, end func(error)) *apiGuard {
	g := &apiGuard{Conn: c, end: end, pending: map[uint32]struct{}{}}
	g.in = newFrames(ttrpcHeaderSize, g.answer)
	g.out = newFrames(ttrpcHeaderSize, g.call)
	return g
}

func ttrpcHeader(h []byte) (length, id uint32, typ byte) {
	return binary.BigEndian.Uint32(h[0:4]), binary.BigEndian.Uint32(h[4:8]), h[8]
}

// call records a request the host sends, before the guest can see it.
func (g *apiGuard) call(h []byte) (uint32, error) {
	length, id, typ := ttrpcHeader(h)
	if typ != ttrpcRequest {
		return length, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.pending) >= maxPending {
		return 0, fmt.Errorf("%w: the guest left %d API calls unanswered", ErrProtocol, len(g.pending))
	}
	g.pending[id] = struct{}{}
	return length, nil
}

// answer checks a message from the guest.
func (g *apiGuard) answer(h []byte) (uint32, error) {
	length, id, typ := ttrpcHeader(h)
	g.mu.Lock()
	defer g.mu.Unlock()
	_, asked := g.pending[id]
	switch {
	case typ != ttrpcResponse || !asked:
		return 0, fmt.Errorf("%w: an API message (type %d) for a call the host did not make (%d)", ErrProtocol, typ, id)
	case length > ttrpcMaxMessage:
		return 0, fmt.Errorf("%w: %d-byte API answer", ErrProtocol, length)
	}
	delete(g.pending, id)
	return length, nil
}

func (g *apiGuard) Write(p []byte) (int, error) {
	if err := g.out.feed(p); err != nil {
		g.end(err)
		return 0, err
	}
	return g.Conn.Write(p)
}

func (g *apiGuard) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	if ferr := g.in.feed(p[:n]); ferr != nil {
		g.end(ferr)
		return 0, ferr
	}
	return n, err
}
