package task

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"golang.org/x/sys/unix"
)

// A client that closes the stdin FIFO without CloseIO detaches: the
// process keeps its stdin, what a client that attaches again writes
// reaches it, and only CloseIO ends it.
func TestStdinDetachReattach(t *testing.T) {
	t.Parallel()
	a := newFakeAgent()
	a.stdin = make(chan net.Conn, 1)
	h := newHarness(t, a, 0)
	fifo := filepath.Join(t.TempDir(), "stdin")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	h.run("c1", stdio{stdin: fifo})
	in := <-a.stdin
	attach := func(s string) {
		w, err := os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK, 0)
		if err != nil {
			t.Fatalf("attach to stdin: %v", err)
		}
		if _, err := io.WriteString(w, s); err != nil {
			t.Fatal(err)
		}
		w.Close() // detach
	}
	attach("one\n")
	// Once the line arrived, the FIFO has had no client writer.
	got := make([]byte, 4)
	if _, err := io.ReadFull(in, got); err != nil || string(got) != "one\n" {
		t.Fatalf("the process read %q (%v), want the first client's line", got, err)
	}
	attach("two\n")
	if _, err := h.s.CloseIO(h.ctx(), &taskAPI.CloseIORequest{ID: "c1", Stdin: true}); err != nil {
		t.Fatalf("CloseIO: %v", err)
	}
	got, err := io.ReadAll(in)
	if err != nil || string(got) != "two\n" {
		t.Fatalf("the process read %q (%v), want the second client's line, then EOF", got, err)
	}
}
