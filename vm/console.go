package vm

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ConsoleLogMax bounds the console log. The guest writes its console as
// fast as it likes: the VMM writes into a FIFO and the shim keeps only the
// newest output (cappedFile).
const ConsoleLogMax = 1 << 20

// consoleDrain bounds how long the copier may take to read what the VMM
// left in the FIFO once it has ended.
const consoleDrain = time.Second

// consoleLog copies the guest console from a FIFO into a capped file.
type consoleLog struct {
	fifo, path string
	r          *os.File
	// w is the shim's own write end: until the VMM has opened the FIFO, and
	// after it ended, reads would otherwise see end-of-file.
	w     *os.File
	wOnce sync.Once
	out   *cappedFile
	done  chan struct{}
}

// startConsole makes the FIFO the VMM writes the console into and starts
// copying it to path.
func startConsole(fifo, path string) (_ *consoleLog, retErr error) {
	_ = os.Remove(fifo)
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		return nil, fmt.Errorf("console FIFO: %w", err)
	}
	c := &consoleLog{fifo: fifo, path: path, done: make(chan struct{})}
	defer func() {
		if retErr != nil {
			c.closeFiles()
			_ = os.Remove(fifo)
		}
	}()
	var err error
	// Non-blocking: there is no writer yet. Go polls the FIFO, so Close
	// ends a pending Read.
	if c.r, err = os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0); err != nil {
		return nil, fmt.Errorf("console FIFO: %w", err)
	}
	if c.w, err = os.OpenFile(fifo, os.O_WRONLY, 0); err != nil {
		return nil, fmt.Errorf("console FIFO: %w", err)
	}
	if c.out, err = createCapped(path, ConsoleLogMax); err != nil {
		return nil, fmt.Errorf("console log: %w", err)
	}
	go c.copy()
	return c, nil
}

func (c *consoleLog) closeFiles() {
	for _, f := range []*os.File{c.r, c.w} {
		if f != nil {
			_ = f.Close()
		}
	}
	if c.out != nil {
		_ = c.out.Close()
	}
}

func (c *consoleLog) copy() {
	defer close(c.done)
	defer c.out.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.r.Read(buf)
		if n > 0 {
			_, _ = c.out.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// vmmEnded closes the shim's write end: once the VMM's is closed too, the
// copier reads what is left and ends.
func (c *consoleLog) vmmEnded() {
	c.wOnce.Do(func() { _ = c.w.Close() })
}

// stop waits, at most consoleDrain, for the copier to drain the FIFO after
// the VMM ended, then stops it and removes the FIFO.
func (c *consoleLog) stop() {
	c.vmmEnded()
	select {
	case <-c.done:
	case <-time.After(consoleDrain):
	}
	_ = c.r.Close()
	<-c.done
	_ = os.Remove(c.fifo)
}

// drained waits, at most consoleDrain, for the copier to read what the
// ended VMM left in the FIFO, so that an error shows the last output.
func (c *consoleLog) drained() {
	c.vmmEnded()
	select {
	case <-c.done:
	case <-time.After(consoleDrain):
	}
}
