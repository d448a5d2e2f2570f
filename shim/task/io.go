package task

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/fifo"
	"github.com/containerd/log"

	"github.com/msb-runtime/msb/agent/api"
)

// stdio is where containerd wants a process's standard streams.
type stdio struct {
	stdin, stdout, stderr string
	terminal              bool
}

// procIO copies between containerd's stdio (FIFOs or files) and the
// process's streams on the agent channel. Flow control is end to end: a
// reader that stops reading the FIFO stalls the stream, the agent's copy
// and finally the process, never the shim.
type procIO struct {
	stdin net.Conn
	// stdinW is the shim's own writer of the stdin FIFO. Holding it, the
	// copy reads EOF only once CloseIO closed it and no client holds the
	// FIFO open: a client that closes its end without CloseIO detaches,
	// and one that opens the FIFO again writes to the same stdin, as with
	// runc's shim.
	stdinW     io.Closer
	stdinWOnce sync.Once
	outputs    sync.WaitGroup
	// copied counts the output bytes written to containerd's side, so the
	// drain waits as long as they flow.
	copied  atomic.Int64
	closers []io.Closer
	once    sync.Once
}

// drainStall bounds the wait for output once the guest reported the
// exit: the wait lasts as long as bytes reach containerd's side and ends
// after this long without any (a client that stopped reading its FIFO).
// runc's shim waits as long for its copies on Delete.
const (
	drainStall = 10 * time.Second
	drainCheck = 100 * time.Millisecond
)

// openIO opens the agent streams for a process and starts copying. It
// must run before StartProcess so no output is lost.
func openIO(ctx context.Context, c *api.Client, cid, execID string, s stdio) (_ *procIO, retErr error) {
	p := &procIO{}
	defer func() {
		if retErr != nil {
			p.close()
		}
	}()
	open := func(fd int) (net.Conn, error) {
		st, err := c.OpenStdio(api.StdioHeader{ContainerID: cid, ExecID: execID, FD: fd})
		if err == nil {
			p.closers = append(p.closers, st)
		}
		return st, err
	}
	if s.stdin != "" {
		// The shim's writer first, read-write so the open never waits
		// nor fails for want of a reader: from then on the FIFO has a
		// writer, and a client that attaches and detaches before the
		// reader below is open cannot end stdin with an early EOF.
		w, err := fifo.OpenFifo(ctx, s.stdin, syscall.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("open stdin %s: %w", s.stdin, err)
		}
		p.stdinW = w
		p.closers = append(p.closers, w)
		r, err := openStdin(ctx, s.stdin)
		if err != nil {
			return nil, err
		}
		p.closers = append(p.closers, r)
		st, err := open(api.Stdin)
		if err != nil {
			return nil, err
		}
		p.stdin = st
		go func() {
			_, _ = io.Copy(st, r)
			p.closeStdin()
		}()
	}
	outs, err := p.openOutputs(ctx, cid, s)
	if err != nil {
		return nil, err
	}
	for fd, w := range outs {
		st, err := open(fd)
		if err != nil {
			return nil, err
		}
		p.outputs.Add(1)
		go func() {
			defer p.outputs.Done()
			if _, err := io.Copy(progress{w, &p.copied}, st); err != nil {
				log.G(ctx).WithError(err).Debugf("copy fd %d of %s/%s", fd, cid, execID)
			}
			// containerd's reader waits for EOF before it reports the
			// process done (ctr task exec, CRI logs).
			w.Close()
		}()
	}
	return p, nil
}

// flags reports which streams were opened, for StartProcess.
func (s stdio) flags() (stdin, stdout, stderr bool) {
	return s.stdin != "", s.stdout != "", s.stderr != "" && !s.terminal
}

// openOutputs opens where the process's stdout and stderr go: FIFOs,
// files, or one logging binary for both.
func (p *procIO) openOutputs(ctx context.Context, cid string, s stdio) (map[int]io.WriteCloser, error) {
	outs := map[int]io.WriteCloser{}
	if u, ok := isBinaryURI(s.stdout); ok {
		l, err := startBinaryLogger(ctx, u, cid)
		if err != nil {
			return nil, err
		}
		p.closers = append(p.closers, l)
		outs[api.Stdout] = l.stdout
		if !s.terminal {
			outs[api.Stderr] = l.stderr
		} else {
			l.stderr.Close()
		}
		return outs, nil
	}
	for fd, path := range map[int]string{api.Stdout: s.stdout, api.Stderr: s.stderr} {
		if path == "" || (fd == api.Stderr && s.terminal) {
			continue
		}
		w, err := openOutput(ctx, path)
		if err != nil {
			return nil, err
		}
		p.closers = append(p.closers, w)
		outs[fd] = w
	}
	return outs, nil
}

// openOutput opens a FIFO (containerd's default) or a file:// URI.
func openOutput(ctx context.Context, path string) (io.WriteCloser, error) {
	u, err := url.Parse(path)
	if err == nil && u.Scheme != "" {
		if u.Scheme != "file" {
			return nil, fmt.Errorf("stdio URI scheme %q is not supported (fifo paths, file:// and binary:// are)", u.Scheme)
		}
		f, err := os.OpenFile(u.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, fmt.Errorf("open log file: %w", err)
		}
		return f, nil
	}
	w, err := fifo.OpenFifo(ctx, path, syscall.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return w, nil
}

// closeStdin half-closes the stdin stream: the process reads EOF.
func (p *procIO) closeStdin() {
	if p != nil && p.stdin != nil {
		p.once.Do(func() { p.stdin.Close() })
	}
}

// endStdin is CloseIO: the shim lets go of its writer of the stdin FIFO,
// so the copy ends (and the process reads EOF) once what the clients wrote
// was sent and they closed their ends.
func (p *procIO) endStdin() {
	if p != nil && p.stdinW != nil {
		p.stdinWOnce.Do(func() { p.stdinW.Close() })
	}
}

// wait returns once all output was copied to containerd's side, or once
// it made no progress for drainStall.
func (p *procIO) wait() {
	if p == nil {
		return
	}
	done := make(chan struct{})
	go func() { p.outputs.Wait(); close(done) }()
	tick := time.NewTicker(drainCheck)
	defer tick.Stop()
	last, still := p.copied.Load(), time.Duration(0)
	for still < drainStall {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		if n := p.copied.Load(); n != last {
			last, still = n, 0
		} else {
			still += drainCheck
		}
	}
	log.L.Warnf("output still not copied after %s without progress: the reader of a FIFO stopped reading", drainStall)
}

// progress counts what reaches containerd's side.
type progress struct {
	w io.Writer
	n *atomic.Int64
}

func (p progress) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n.Add(int64(n))
	return n, err
}

// openStdin opens containerd's stdin FIFO for reading.
func openStdin(ctx context.Context, path string) (io.ReadCloser, error) {
	r, err := fifo.OpenFifo(ctx, path, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open stdin %s: %w", path, err)
	}
	return r, nil
}

func (p *procIO) close() {
	if p == nil {
		return
	}
	for _, c := range p.closers {
		c.Close()
	}
}
