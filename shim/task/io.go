package task

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
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
	// stdinDone is closed once everything containerd wrote was sent.
	stdinDone chan struct{}
	outputs   sync.WaitGroup
	closers   []io.Closer
	once      sync.Once
}

// drainTimeout bounds the wait for output after the agent reported the
// exit; the agent drains first, so this only matters if the host side is
// stuck.
const drainTimeout = 5 * time.Second

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
		st, err := open(api.Stdin)
		if err != nil {
			return nil, err
		}
		r, err := fifo.OpenFifo(ctx, s.stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("open stdin %s: %w", s.stdin, err)
		}
		p.closers = append(p.closers, r)
		p.stdin = st
		p.stdinDone = make(chan struct{})
		go func() {
			defer close(p.stdinDone)
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
			if _, err := io.Copy(w, st); err != nil {
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

// stdinGrace bounds CloseIO's wait for stdin data still in flight.
const stdinGrace = 2 * time.Second

// finishStdin lets the copy of what containerd already wrote end, then
// closes stdin: containerd closes its end of the FIFO before it asks.
func (p *procIO) finishStdin() {
	if p == nil || p.stdin == nil {
		return
	}
	select {
	case <-p.stdinDone:
	case <-time.After(stdinGrace):
	}
	p.closeStdin()
}

// wait returns once all output was copied, or after drainTimeout.
func (p *procIO) wait() {
	if p == nil {
		return
	}
	done := make(chan struct{})
	go func() { p.outputs.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainTimeout):
	}
}

func (p *procIO) close() {
	if p == nil {
		return
	}
	for _, c := range p.closers {
		c.Close()
	}
}
