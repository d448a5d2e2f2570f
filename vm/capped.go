package vm

import (
	"os"
	"sync"
)

// cappedFile is a log file that keeps only its newest output: when a
// write would take it past max bytes, its oldest half is dropped first, so
// it always holds at least the last max/2 bytes (what error messages show
// the tail of). Moving half the cap each time it fills keeps the copying
// linear in what is written. The guest decides how much its console and
// the VMM's logs receive, and they live in /run, which is RAM.
type cappedFile struct {
	mu   sync.Mutex
	out  *os.File
	size int64
	max  int64
}

// createCapped creates (truncates) the log at path.
func createCapped(path string, max int64) (*cappedFile, error) {
	out, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	return &cappedFile{out: out, max: max}, nil
}

// Write appends p. It never fails for the writer's sake: a full /run must
// not stop the VMM or the guest.
func (c *cappedFile) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.write(p)
	return len(p), nil
}

func (c *cappedFile) write(p []byte) error {
	half := c.max / 2
	switch {
	case int64(len(p)) >= half:
		p = p[int64(len(p))-half:]
		if err := c.truncate(nil); err != nil {
			return err
		}
	case c.size+int64(len(p)) > c.max:
		keep := make([]byte, half-int64(len(p)))
		if _, err := c.out.ReadAt(keep, c.size-int64(len(keep))); err != nil {
			return err
		}
		if err := c.truncate(keep); err != nil {
			return err
		}
	}
	n, err := c.out.WriteAt(p, c.size)
	c.size += int64(n)
	return err
}

// truncate makes keep the whole log.
func (c *cappedFile) truncate(keep []byte) error {
	if _, err := c.out.WriteAt(keep, 0); err != nil {
		return err
	}
	c.size = int64(len(keep))
	return c.out.Truncate(c.size)
}

func (c *cappedFile) Close() error { return c.out.Close() }
