package vm

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The guest writes far more than the cap: the log never passes it, and
// what it holds is the newest output, in order.
func TestConsoleLogCapped(t *testing.T) {
	dir := t.TempDir()
	fifo, path := filepath.Join(dir, "console.pipe"), filepath.Join(dir, "console.log")
	c, err := startConsole(fifo, path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // the VMM's end
	if err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	for i := 0; all.Len() < 5*ConsoleLogMax; i++ {
		line := []byte(fmt.Sprintf("console line %d\n", i))
		if i%1000 == 0 {
			line = bytes.Repeat(line, 3000) // bigger than a pipe buffer
		}
		all.Write(line)
		if _, err := w.Write(line); err != nil {
			t.Fatal(err)
		}
		if i%5000 == 0 {
			if st, err := os.Stat(path); err != nil || st.Size() > ConsoleLogMax {
				t.Fatalf("console log while written: %v, %v (cap %d)", st.Size(), err, ConsoleLogMax)
			}
		}
	}
	w.Close()
	c.stop()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) > ConsoleLogMax || len(got) < ConsoleLogMax/2 {
		t.Fatalf("console log holds %d bytes, want %d-%d", len(got), ConsoleLogMax/2, ConsoleLogMax)
	}
	if !bytes.HasSuffix(all.Bytes(), got) {
		t.Fatalf("console log is not the newest output (%d bytes, ends %q)", len(got), got[len(got)-40:])
	}
	if _, err := os.Stat(fifo); !os.IsNotExist(err) {
		t.Errorf("FIFO left behind: %v", err)
	}
}

// A VMM that writes little: everything is kept, and drained() makes it
// readable once the VMM has ended.
func TestConsoleLogDrained(t *testing.T) {
	dir := t.TempDir()
	fifo, path := filepath.Join(dir, "console.pipe"), filepath.Join(dir, "console.log")
	c, err := startConsole(fifo, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.stop()
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	msg := "Kernel panic - not syncing: test\n"
	if _, err := w.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	c.drained()
	if got, err := os.ReadFile(path); err != nil || string(got) != msg {
		t.Fatalf("console log %q, %v; want %q", got, err, msg)
	}
}
