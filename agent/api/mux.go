package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/hashicorp/yamux"
)

// PortName is the name of the virtio-console port that carries the agent
// channel; the guest finds it under /sys/class/virtio-ports/*/name.
const PortName = "msb.agent"

// One virtio-console port carries everything: a yamux session whose streams
// are opened by the host. Each stream starts with one header line that says
// what it carries: "ttrpc" for the API, "stdio <container> <exec> <fd>" for
// one stdio stream of one process, "tcp <port>" for a connection to a port
// on the guest's loopback (tcp.go). yamux's per-stream windows give each
// stream its own flow control, so a reader that stalls on one process's
// stdout never blocks the API or another process.
const (
	kindTTRPC = "ttrpc"
	kindStdio = "stdio"
	// maxHeader bounds what a peer may send before its header line ends.
	maxHeader = 512
)

// Stdio file descriptor numbers as used in stream headers.
const (
	Stdin  = 0
	Stdout = 1
	Stderr = 2
)

// DefaultTimeout bounds how long the guest may leave the host's writes
// unread, or a stream the host opened unanswered, before the host gives
// the channel up.
const DefaultTimeout = 30 * time.Second

func muxConfig(timeout time.Duration) *yamux.Config {
	c := yamux.DefaultConfig()
	// The port never drops silently: the VMM ending closes it. Keepalives
	// would only wake an idle guest, and the host's guard refuses pings.
	c.EnableKeepAlive = false
	c.LogOutput = io.Discard
	c.ConnectionWriteTimeout = timeout
	c.StreamOpenTimeout = timeout
	// Each stream buffers at most this much of what the peer sent; it is
	// yamux's least (and default) window, kept explicit as the bound the
	// host relies on.
	c.MaxStreamWindowSize = maxWindow
	return c
}

// maxWindow is yamux's initial (and least allowed) stream window.
const maxWindow = 256 << 10

// StdioHeader names the process and descriptor a stdio stream belongs to.
type StdioHeader struct {
	ContainerID string
	ExecID      string // "" for the init process
	FD          int
}

func (h StdioHeader) line() (string, error) {
	if err := ValidID(h.ContainerID); err != nil {
		return "", fmt.Errorf("container id: %w", err)
	}
	if h.ExecID != "" {
		if err := ValidID(h.ExecID); err != nil {
			return "", fmt.Errorf("exec id: %w", err)
		}
	}
	if h.FD < Stdin || h.FD > Stderr {
		return "", fmt.Errorf("stdio fd %d out of range", h.FD)
	}
	exec := h.ExecID
	if exec == "" {
		exec = "-"
	}
	return fmt.Sprintf("%s %s %s %d\n", kindStdio, h.ContainerID, exec, h.FD), nil
}

// ValidID accepts the ids containerd accepts (letters, digits, '_', '-',
// '.'; 1-76 characters; not starting with '.' or '-'), so they are safe in
// headers and guest paths.
func ValidID(id string) error {
	if id == "" || len(id) > 76 {
		return fmt.Errorf("invalid id %q: length", id)
	}
	for i, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || (i > 0 && (r == '-' || r == '.'))
		if !ok {
			return fmt.Errorf("invalid id %q", id)
		}
	}
	return nil
}

func parseStdio(fields []string) (StdioHeader, error) {
	if len(fields) != 4 {
		return StdioHeader{}, fmt.Errorf("malformed stdio header %q", strings.Join(fields, " "))
	}
	h := StdioHeader{ContainerID: fields[1], ExecID: fields[2]}
	if h.ExecID == "-" {
		h.ExecID = ""
	}
	fd, err := strconv.Atoi(fields[3])
	if err != nil {
		return StdioHeader{}, fmt.Errorf("stdio header fd: %w", err)
	}
	h.FD = fd
	if _, err := h.line(); err != nil {
		return StdioHeader{}, err
	}
	return h, nil
}

// Client is the host's end of the agent channel.
type Client struct {
	AgentService
	sess  *yamux.Session
	ttrpc *ttrpc.Client
	guard *guard
	// closed is set once the host closes the channel on purpose.
	closed atomic.Bool
}

// ClientOption changes how NewClient sets the channel up.
type ClientOption func(*clientOptions)

type clientOptions struct{ timeout time.Duration }

// WithTimeout replaces DefaultTimeout.
func WithTimeout(d time.Duration) ClientOption {
	return func(o *clientOptions) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// NewClient starts the host side of the channel on conn and opens the API
// stream. It sends nothing else; callers probe readiness with Ping. The
// channel ends by itself when the guest breaks its protocol or stops
// reading (guard.go); Done and Err say so.
func NewClient(conn net.Conn, opts ...ClientOption) (*Client, error) {
	o := clientOptions{timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	g := newGuard(conn, o.timeout, maxWindow)
	sess, err := yamux.Client(g, muxConfig(o.timeout))
	if err != nil {
		return nil, fmt.Errorf("agent channel: %w", err)
	}
	s, err := openStream(sess, kindTTRPC+"\n")
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("agent api stream: %w", err)
	}
	tc := ttrpc.NewClient(newAPIGuard(s, func(err error) {
		g.fail(err)
		sess.Close()
	}))
	return &Client{AgentService: NewAgentClient(tc), sess: sess, ttrpc: tc, guard: g}, nil
}

func openStream(sess *yamux.Session, header string) (*yamux.Stream, error) {
	s, err := sess.OpenStream()
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(s, header); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// OpenStdio opens one stdio stream of a process. Open them all before
// StartProcess; the agent waits a bounded time for the ones it was told of.
func (c *Client) OpenStdio(h StdioHeader) (net.Conn, error) {
	line, err := h.line()
	if err != nil {
		return nil, err
	}
	s, err := openStream(c.sess, line)
	if err != nil {
		return nil, fmt.Errorf("open stdio stream %d of %s/%s: %w", h.FD, h.ContainerID, h.ExecID, err)
	}
	return s, nil
}

// Done is closed when the channel ends: closed by the host, the VM gone,
// or given up on a guest that broke the protocol or stopped reading.
func (c *Client) Done() <-chan struct{} { return c.sess.CloseChan() }

// Err says why the channel ended, once Done is closed: nil when the host
// closed it.
func (c *Client) Err() error {
	if err := c.guard.failure(); err != nil {
		return err
	}
	if c.closed.Load() {
		return nil
	}
	return errEnded
}

var errEnded = errors.New("the agent channel ended: the guest closed it, or left a stream unanswered")

// Close ends the channel.
func (c *Client) Close() error {
	c.closed.Store(true)
	c.ttrpc.Close()
	return c.sess.Close()
}

// StdioHandler receives each stdio stream the host opens.
type StdioHandler func(StdioHeader, net.Conn)

// Serve runs the guest side of the channel on conn until it ends: it serves
// svc on the API stream and hands the other streams to h.
func Serve(ctx context.Context, conn io.ReadWriteCloser, svc AgentService, h Handlers) error {
	sess, err := yamux.Server(conn, muxConfig(DefaultTimeout))
	if err != nil {
		return fmt.Errorf("agent channel: %w", err)
	}
	defer sess.Close()
	srv, err := ttrpc.NewServer()
	if err != nil {
		return fmt.Errorf("ttrpc server: %w", err)
	}
	RegisterAgentService(srv, svc)
	lis := newChanListener(sess.Addr())
	go srv.Serve(ctx, lis) //nolint:errcheck // ends with the listener
	defer srv.Close()
	for {
		s, err := sess.AcceptStream()
		if err != nil {
			if errors.Is(err, yamux.ErrSessionShutdown) || errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("accept stream: %w", err)
		}
		go route(s, lis, h)
	}
}

func route(s *yamux.Stream, lis *chanListener, h Handlers) {
	line, err := readHeader(s)
	if err != nil {
		s.Close()
		return
	}
	fields := strings.Fields(line)
	switch {
	case len(fields) == 1 && fields[0] == kindTTRPC:
		lis.push(s)
	case len(fields) > 0 && fields[0] == kindStdio && h.Stdio != nil:
		hdr, err := parseStdio(fields)
		if err != nil {
			s.Close()
			return
		}
		h.Stdio(hdr, s)
	case len(fields) > 0 && fields[0] == kindTCP:
		port, err := parseTCP(fields)
		switch {
		case err != nil:
			Refuse(s, err)
		case h.TCP == nil:
			Refuse(s, errors.New("port forwarding is not served"))
		default:
			h.TCP(port, s)
		}
	default:
		s.Close()
	}
}

// readHeader reads up to and including '\n' one byte at a time, so nothing
// after the header is consumed from the stream.
func readHeader(r io.Reader) (string, error) {
	var b strings.Builder
	one := make([]byte, 1)
	for b.Len() < maxHeader {
		if _, err := io.ReadFull(r, one); err != nil {
			return "", err
		}
		if one[0] == '\n' {
			return b.String(), nil
		}
		b.WriteByte(one[0])
	}
	return "", errors.New("stream header too long")
}

// chanListener turns the API streams into a net.Listener for ttrpc.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
