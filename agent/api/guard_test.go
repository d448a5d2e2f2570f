package api

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/msb-runtime/msb/internal/sockpair"
)

// frame encodes a yamux frame header.
func frame(typ uint8, flags uint16, id, length uint32) []byte {
	b := make([]byte, frameHeaderSize)
	b[1] = typ
	binary.BigEndian.PutUint16(b[2:], flags)
	binary.BigEndian.PutUint32(b[4:], id)
	binary.BigEndian.PutUint32(b[8:], length)
	return b
}

// ended waits for the channel to end and returns why.
func ended(t *testing.T, c *Client) error {
	t.Helper()
	select {
	case <-c.Done():
		return c.Err()
	case <-time.After(10 * time.Second):
		t.Fatal("the channel survived a hostile guest")
		return nil
	}
}

// A guest that sends what an honest one never does ends the channel at
// once, before yamux does any work for it (a goroutine per ping, a
// buffered stream per SYN).
func TestGuardEndsChannelOnHostileFrames(t *testing.T) {
	for name, hostile := range map[string][]byte{
		"ping":              frame(framePing, frameSYN, 0, 7),
		"ping ack":          frame(framePing, 2, 0, 7),
		"stream open":       append(frame(frameData, frameSYN, 2, 4), "data"...),
		"window open":       frame(1, frameSYN, 4, 0),
		"odd id open":       frame(1, frameSYN, 3, 0),
		"oversized data":    frame(frameData, 0, 1, maxWindow+1),
		"bad version":       {1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0},
		"unknown type":      frame(9, 0, 1, 0),
		"garbage":           []byte(strings.Repeat("\xff", 64)),
		"split ping header": frame(framePing, frameSYN, 0, 1),
	} {
		t.Run(name, func(t *testing.T) {
			host, guest := sockpair.New(t)
			c, err := NewClient(host)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			go io.Copy(io.Discard, guest) //nolint:errcheck // the guest reads what the host sends
			if name == "split ping header" {
				for _, b := range hostile {
					guest.Write([]byte{b})
				}
			} else {
				guest.Write(hostile)
			}
			if err := ended(t, c); !errors.Is(err, ErrProtocol) {
				t.Fatalf("channel ended with %v, want a protocol violation", err)
			}
		})
	}
}

// A flood of pings costs the host no goroutines: without the guard yamux
// starts one per ping, each living up to the write timeout when the
// guest does not read the answers.
func TestGuardPingFloodBounded(t *testing.T) {
	host, guest := sockpair.New(t)
	before := runtime.NumGoroutine()
	c, err := NewClient(host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ping := frame(framePing, frameSYN, 0, 1)
	flood := bytes.Repeat(ping, 10000)
	go guest.Write(flood) //nolint:errcheck // the host stops reading early
	ended(t, c)
	if n := runtime.NumGoroutine() - before; n > 10 {
		t.Fatalf("%d more goroutines after a ping flood", n)
	}
}

// stallConn is the guest's end of a channel whose reads stop for good
// once stall is closed, as a guest that stops reading its port.
type stallConn struct {
	net.Conn
	stall, closed chan struct{}
}

func (s *stallConn) Read(p []byte) (int, error) {
	select {
	case <-s.stall:
		<-s.closed
		return 0, net.ErrClosed
	default:
		return s.Conn.Read(p)
	}
}

// A guest that stops reading is given up once a write has waited the
// timeout.
func TestGuardGuestStopsReading(t *testing.T) {
	host, guest := sockpair.New(t)
	g := &stallConn{Conn: guest, stall: make(chan struct{}), closed: make(chan struct{})}
	defer close(g.closed)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	accepted := make(chan struct{}, 8)
	go Serve(ctx, g, pingOnly{}, Handlers{Stdio: func(StdioHeader, net.Conn) { accepted <- struct{}{} }}) //nolint:errcheck // ends with the test
	c, err := NewClient(host, WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Streams the guest accepted (its answer is written before the
	// handler runs, and read by the host before the Ping's answer), each
	// of which may carry a window: together more than the socket buffers.
	var streams []net.Conn
	for i := range cap(accepted) {
		s, err := c.OpenStdio(StdioHeader{ContainerID: "c1", ExecID: fmt.Sprint("e", i), FD: Stdin})
		if err != nil {
			t.Fatal(err)
		}
		<-accepted
		streams = append(streams, s)
	}
	if _, err := c.Ping(ctx, &PingRequest{}); err != nil {
		t.Fatal(err)
	}
	close(g.stall)
	for _, s := range streams {
		go s.Write(make([]byte, maxWindow-64)) //nolint:errcheck // fails when the channel ends
	}
	err = ended(t, c)
	if err == nil || !strings.Contains(err.Error(), "read nothing") {
		t.Fatalf("channel ended with %v, want a write timeout", err)
	}
}

// Honest traffic split at every byte passes: the guard follows frames
// across reads, bodies included.
func TestGuardFollowsSplitFrames(t *testing.T) {
	var stream []byte
	stream = append(stream, frame(1, 2, 1, 0)...) // ACK of the host's stream
	stream = append(stream, frame(frameData, 0, 1, 5)...)
	stream = append(stream, "\x00\x02\xff\x01\x00"...) // a body that looks like a SYN header
	stream = append(stream, frame(frameData, 4, 1, 0)...)
	stream = append(stream, frame(frameGoAway, 0, 0, 0)...)
	g := newGuard(nil, time.Second, maxWindow)
	for i := range stream {
		if err := g.in.feed(stream[i : i+1]); err != nil {
			t.Fatalf("byte %d: %v", i, err)
		}
	}
	if !g.in.between() {
		t.Fatal("guard lost track of the frames")
	}
	if err := g.in.feed(frame(framePing, frameSYN, 0, 0)); err == nil {
		t.Fatal("ping after split frames passed")
	}
}

// BenchmarkStdout copies 8 MiB of a process's stdout from the guest over
// the guarded channel on a socketpair, as from the VMM's socket.
func BenchmarkStdout(b *testing.B) {
	const size = 8 << 20
	payload := make([]byte, size)
	for i := 0; i < b.N; i++ {
		host, guest := sockpair.New(b)
		streams := make(chan net.Conn, 1)
		ctx, cancel := context.WithCancel(context.Background())
		go Serve(ctx, guest, pingOnly{}, Handlers{Stdio: func(_ StdioHeader, s net.Conn) { streams <- s }}) //nolint:errcheck // ends with the test
		c, err := NewClient(host)
		if err != nil {
			b.Fatal(err)
		}
		s, err := c.OpenStdio(StdioHeader{ContainerID: "c1", FD: Stdout})
		if err != nil {
			b.Fatal(err)
		}
		g := <-streams
		go func() { g.Write(payload); g.Close() }() //nolint:errcheck // the host reads it all
		b.SetBytes(size)
		n, err := io.Copy(io.Discard, s)
		if err != nil || n != size {
			b.Fatalf("copied %d: %v", n, err)
		}
		c.Close()
		cancel()
	}
}
