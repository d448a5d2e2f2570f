package api

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

type pingOnly struct{ AgentService }

func (pingOnly) Ping(context.Context, *PingRequest) (*PingResponse, error) {
	return &PingResponse{AgentVersion: "test"}, nil
}

// pair connects a Client and a guest Serve over an in-memory pipe.
func pair(t *testing.T, onStdio StdioHandler) *Client { return pairTCP(t, onStdio, nil) }

func pairTCP(t *testing.T, onStdio StdioHandler, onTCP TCPHandler) *Client {
	host, guest := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, guest, pingOnly{}, Handlers{Stdio: onStdio, TCP: onTCP}) }()
	c, err := NewClient(host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not end when the channel closed")
		}
	})
	return c
}

func TestPingAndStdio(t *testing.T) {
	got := make(chan string, 1)
	c := pair(t, func(h StdioHeader, s net.Conn) {
		b, _ := io.ReadAll(s)
		got <- h.ContainerID + "/" + h.ExecID + "/" + string(rune('0'+h.FD)) + ":" + string(b)
		s.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Ping(ctx, &PingRequest{})
	if err != nil || r.AgentVersion != "test" {
		t.Fatalf("ping: %v %v", r, err)
	}
	s, err := c.OpenStdio(StdioHeader{ContainerID: "c1", FD: Stdin})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(s, "hello")
	s.Close()
	if g := <-got; g != "c1//0:hello" {
		t.Fatalf("guest got %q", g)
	}
}

// A stream nobody reads must not stall the API: yamux windows are per stream.
func TestStalledStreamDoesNotBlockAPI(t *testing.T) {
	c := pair(t, func(StdioHeader, net.Conn) {}) // never reads
	s, err := c.OpenStdio(StdioHeader{ContainerID: "c1", ExecID: "e1", FD: Stdin})
	if err != nil {
		t.Fatal(err)
	}
	go s.Write(make([]byte, 4<<20)) // far beyond one window
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx, &PingRequest{}); err != nil {
		t.Fatalf("ping behind a stalled stream: %v", err)
	}
}

func TestStdioHeader(t *testing.T) {
	for _, bad := range []StdioHeader{
		{ContainerID: "", FD: 1}, {ContainerID: "a b", FD: 1}, {ContainerID: "c", ExecID: "../x", FD: 1}, {ContainerID: "c", FD: 3},
	} {
		if _, err := bad.line(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	line, err := StdioHeader{ContainerID: "c1", FD: Stderr}.line()
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseStdio(strings.Fields(line))
	if err != nil || h != (StdioHeader{ContainerID: "c1", FD: Stderr}) {
		t.Fatalf("round trip: %+v %v", h, err)
	}
	if _, err := parseStdio([]string{"stdio", "c1", "-", "x"}); err == nil {
		t.Error("bad fd accepted")
	}
}

func TestReadHeaderBounded(t *testing.T) {
	if _, err := readHeader(strings.NewReader(strings.Repeat("x", maxHeader+10))); err == nil {
		t.Error("unbounded header accepted")
	}
	r := strings.NewReader("ttrpc\nrest")
	if h, err := readHeader(r); err != nil || h != "ttrpc" {
		t.Fatalf("%q %v", h, err)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "rest" {
		t.Fatalf("header read consumed %q", rest)
	}
}
