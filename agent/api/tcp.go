package api

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A "tcp <port>" stream carries one TCP connection to a port on the
// guest's loopback (CRI port-forward: the client dials localhost in the
// pod's network namespace, and the pod's servers run in the guest). The
// guest answers with one line, "ok" once it is connected or "error <why>",
// then the stream carries the connection's bytes both ways.
const (
	kindTCP  = "tcp"
	replyOK  = "ok"
	replyErr = "error"
)

// TCPHandler connects a "tcp" stream to port in the guest. It answers
// with Accept or Refuse before it relays.
type TCPHandler func(port int, s net.Conn)

// Handlers receive the streams that are not the API.
type Handlers struct {
	Stdio StdioHandler
	// TCP may be nil: the guest then refuses every "tcp" stream.
	TCP TCPHandler
}

func parseTCP(fields []string) (int, error) {
	if len(fields) != 2 {
		return 0, fmt.Errorf("malformed tcp header %q", strings.Join(fields, " "))
	}
	port, err := strconv.Atoi(fields[1])
	if err != nil || port < 1 || port > 65535 {
		return 0, fmt.Errorf("tcp header: bad port %q", fields[1])
	}
	return port, nil
}

// Accept tells the host that the guest end of a "tcp" stream is
// connected.
func Accept(s net.Conn) error {
	_, err := io.WriteString(s, replyOK+"\n")
	return err
}

// Refuse tells the host why the guest could not connect, and closes s.
func Refuse(s net.Conn, why error) {
	msg := strings.ReplaceAll(why.Error(), "\n", " ")
	if len(msg) > maxHeader-len(replyErr)-2 {
		msg = msg[:maxHeader-len(replyErr)-2]
	}
	io.WriteString(s, replyErr+" "+msg+"\n") //nolint:errcheck // closing anyway
	s.Close()
}

// tcpReplyTimeout bounds the wait for the guest's "ok" or "error" line.
const tcpReplyTimeout = 30 * time.Second

// ErrRefused is returned by DialTCP when the guest could not connect.
var ErrRefused = errors.New("guest refused the connection")

// DialTCP connects to port on the guest's loopback through the channel.
// The guest's reply is read here, so an error means there is no
// connection and a nil error a connected stream.
func (c *Client) DialTCP(port int) (net.Conn, error) {
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("tcp port %d out of range", port)
	}
	s, err := openStream(c.sess, fmt.Sprintf("%s %d\n", kindTCP, port))
	if err != nil {
		return nil, fmt.Errorf("open tcp stream to guest port %d: %w", port, err)
	}
	// The guest's connect is bounded there; a guest that never answers
	// must not hold the host's side forever.
	s.SetReadDeadline(time.Now().Add(tcpReplyTimeout)) //nolint:errcheck // yamux streams take deadlines
	reply, err := readHeader(s)
	s.SetReadDeadline(time.Time{}) //nolint:errcheck // as above
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("guest port %d: no reply: %w", port, err)
	}
	if reply != replyOK {
		s.Close()
		why, _ := strings.CutPrefix(reply, replyErr+" ")
		return nil, fmt.Errorf("guest port %d: %w: %s", port, ErrRefused, why)
	}
	return s, nil
}

// Relay copies a and b into each other until both directions end, then
// closes both. Each direction's end is passed on as a half close, so a
// client that shuts down its write side still reads the whole answer.
func Relay(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src) //nolint:errcheck // either end may go away
		closeWrite(dst)
	}
	go pipe(a, b)
	go pipe(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

// closeWrite half-closes c: TCP's CloseWrite, or Close on a yamux stream,
// which only ends its sending side.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite() //nolint:errcheck // best effort
		return
	}
	c.Close()
}
