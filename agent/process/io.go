package process

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// procIO connects a process's descriptors 0-2 to the host's streams:
// pipes, or a pty whose master carries stdin and the merged output.
type procIO struct {
	child   [3]*os.File // the process's 0-2; closed here once it has them
	master  *os.File    // pty master, nil without a terminal
	stdinW  *os.File    // write end of the stdin pipe, nil with a pty
	stdin   net.Conn
	outs    []*outPump
	closers []io.Closer // everything to close at the end
	// gone is set once the process exited: stdin then ends without
	// hanging up a terminal whose output still drains.
	gone atomic.Bool
	wg   sync.WaitGroup
	once sync.Once
}

// newPipeIO makes one pipe per declared stream; an undeclared descriptor is
// /dev/null.
func newPipeIO(streams map[int]net.Conn) (_ *procIO, err error) {
	pio := &procIO{}
	defer func() {
		if err != nil {
			pio.abort()
		}
	}()
	for fd := 0; fd < 3; fd++ {
		conn := streams[fd]
		if conn == nil {
			if pio.child[fd], err = os.OpenFile(os.DevNull, os.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
				return nil, fmt.Errorf("open %s for fd %d: %w", os.DevNull, fd, err)
			}
			continue
		}
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("pipe for fd %d: %w", fd, err)
		}
		pio.closers = append(pio.closers, r, w, conn)
		if fd == 0 {
			pio.child[0], pio.stdinW, pio.stdin = r, w, conn
			continue
		}
		pio.child[fd] = w
		pio.outs = append(pio.outs, newOutPump(r, conn))
	}
	return pio, nil
}

// newPtyIO allocates a pty from ptmx; the process gets the slave as 0-2.
// The stdout stream carries the terminal's output; a stderr stream has
// nothing to carry and is closed at once.
func newPtyIO(ptmx string, streams map[int]net.Conn, width, height uint) (*procIO, error) {
	master, slave, err := openPty(ptmx)
	if err != nil {
		return nil, err
	}
	pio := &procIO{master: master, child: [3]*os.File{slave, slave, slave}, stdin: streams[0]}
	pio.closers = append(pio.closers, master)
	if width > 0 && height > 0 {
		if err := resizePty(master, uint32(width), uint32(height)); err != nil {
			pio.abort()
			return nil, err
		}
	}
	if c := streams[2]; c != nil {
		c.Close()
	}
	out := newOutPump(master, streams[1])
	if c := streams[1]; c != nil {
		pio.closers = append(pio.closers, c)
	}
	if pio.stdin != nil {
		pio.closers = append(pio.closers, pio.stdin)
	}
	pio.outs = []*outPump{out}
	return pio, nil
}

// closeChild closes the agent's copies of the process's descriptors, so
// the output pipes reach EOF when the process (and its heirs) close theirs.
func (p *procIO) closeChild() {
	seen := map[*os.File]bool{}
	for _, f := range p.child {
		if f != nil && !seen[f] {
			seen[f] = true
			f.Close()
		}
	}
}

// start begins copying.
func (p *procIO) start() {
	if p.stdin != nil {
		p.wg.Add(1)
		go p.copyStdin()
	}
	for _, o := range p.outs {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			o.run()
		}()
	}
}

// copyStdin feeds the stdin stream to the process until the stream ends
// (the host closed it, or CloseStdin set its read deadline); then the pipe
// is closed so the process reads EOF. A pty cannot be half-closed: when the
// host ends stdin (CloseIO) the terminal is hung up instead, as runc's shim
// closes its console then; when the process has exited, the copy just
// stops and the output drains.
func (p *procIO) copyStdin() {
	defer p.wg.Done()
	var dst io.Writer = p.master
	if p.stdinW != nil {
		dst = p.stdinW
	}
	_, err := io.Copy(dst, p.stdin)
	switch {
	case p.stdinW != nil:
		p.stdinW.Close()
	case err == nil && !p.gone.Load():
		p.master.Close() // the slave's session gets SIGHUP, its reads EIO
	}
}

// closeStdin ends stdin once what the host already sent is delivered: a
// read deadline in the past makes the stream return its buffered data,
// then time out.
func (p *procIO) closeStdin() {
	if p.stdin != nil {
		p.stdin.SetReadDeadline(time.Now()) //nolint:errcheck // yamux streams never fail this
	}
}

// exited switches the output copies to bounded draining: each stops after
// idle without data, so an heir that keeps stdout open cannot hold Wait.
func (p *procIO) exited(idle time.Duration) {
	p.gone.Store(true)
	p.closeStdin()
	for _, o := range p.outs {
		o.processExited(idle)
	}
}

// wait waits for the copies to finish and closes everything. The stdin copy
// may be blocked writing to a process that never reads: closing the pipe
// or master first unblocks it.
func (p *procIO) wait() {
	for _, o := range p.outs {
		<-o.fin
	}
	p.abort()
	p.wg.Wait()
}

// abort closes every descriptor and stream (idempotent).
func (p *procIO) abort() {
	p.once.Do(func() {
		p.closeChild()
		for _, c := range p.closers {
			c.Close()
		}
	})
}

// outPump copies one output (pipe read end or pty master) to its stream,
// or discards it when the host declared none or stopped reading.
type outPump struct {
	src      *os.File
	dst      net.Conn
	exitedAt atomic.Bool
	idle     atomic.Int64
	fin      chan struct{} // closed when run returns
}

func newOutPump(src *os.File, dst net.Conn) *outPump {
	return &outPump{src: src, dst: dst, fin: make(chan struct{})}
}

func (o *outPump) run() {
	defer close(o.fin)
	var dst io.Writer = io.Discard
	if o.dst != nil {
		dst = o.dst
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := o.src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				dst = io.Discard // keep reading so the process never blocks
			}
			if o.exitedAt.Load() {
				o.src.SetReadDeadline(time.Now().Add(time.Duration(o.idle.Load()))) //nolint:errcheck
			}
		}
		if err != nil {
			// EOF (pipe), EIO (pty with no slave left) or the drain deadline.
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, unix.EIO) && !errors.Is(err, os.ErrClosed) {
				log.L.WithError(err).Warn("read process output")
			}
			break
		}
	}
	if o.dst != nil {
		o.dst.Close()
	}
}

func (o *outPump) processExited(idle time.Duration) {
	o.idle.Store(int64(idle))
	o.exitedAt.Store(true)
	o.src.SetReadDeadline(time.Now().Add(idle)) //nolint:errcheck // pipes and ptys are pollable
}
