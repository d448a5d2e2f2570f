package vm

import (
	"os"
	"time"
)

// A warm VM's console changes hands with the VM: the process that booted
// it stops copying (pause) and passes the FIFO's read end on; the new owner
// copies on into the same log (adoptConsole). Nothing the guest wrote is
// lost in between: it waits in the FIFO.

// pause stops the copier, leaving the FIFO open and unread.
func (c *consoleLog) pause() {
	_ = c.r.SetReadDeadline(time.Now())
	<-c.done
}

// closeFIFO closes this process's ends of the FIFO once another process
// copies it; the FIFO stays for it.
func (c *consoleLog) closeFIFO() {
	<-c.done
	c.vmmEnded()
	_ = c.r.Close()
}

// adoptConsole copies the console FIFO's read end r on into the capped log
// at path, appending to what the booting process copied there.
func adoptConsole(r *os.File, fifo, path string) *consoleLog {
	c := &consoleLog{fifo: fifo, path: path, r: r, done: make(chan struct{})}
	out, err := openCapped(path, ConsoleLogMax)
	if err != nil {
		// The console is for diagnosis: without a log it is drained all
		// the same, or the guest would stall on a full FIFO.
		out, _ = openCapped(os.DevNull, ConsoleLogMax)
	}
	c.out = out
	go c.copy()
	return c
}

// openCapped opens the log at path to append to it.
func openCapped(path string, max int64) (*cappedFile, error) {
	out, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	st, err := out.Stat()
	if err != nil {
		out.Close()
		return nil, err
	}
	return &cappedFile{out: out, size: st.Size(), max: max}, nil
}
