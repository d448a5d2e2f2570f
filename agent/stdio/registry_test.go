package stdio

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/msb-runtime/msb/agent/api"
)

func pipe(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// closed says whether the far end saw the agent's end close.
func closed(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(time.Second))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF)
}

func TestTakeArrivedFirst(t *testing.T) {
	r := NewRegistry()
	out, _ := pipe(t)
	extra, extraFar := pipe(t)
	r.Put(api.StdioHeader{ContainerID: "c", FD: 1}, out)
	r.Put(api.StdioHeader{ContainerID: "c", FD: 2}, extra) // not declared
	got, err := r.Take(context.Background(), "c", "", []int{1}, time.Second)
	if err != nil || got[1] != out || len(got) != 1 {
		t.Fatalf("Take = %v, %v", got, err)
	}
	if !closed(extraFar) {
		t.Fatal("an undeclared stream was left open")
	}
	if r.Len() != 0 {
		t.Fatalf("%d streams left", r.Len())
	}
}

func TestTakeWaitsForLateStreams(t *testing.T) {
	r := NewRegistry()
	in, _ := pipe(t)
	out, _ := pipe(t)
	go func() {
		time.Sleep(20 * time.Millisecond)
		r.Put(api.StdioHeader{ContainerID: "c", ExecID: "e", FD: 0}, in)
		time.Sleep(20 * time.Millisecond)
		r.Put(api.StdioHeader{ContainerID: "c", ExecID: "e", FD: 1}, out)
	}()
	got, err := r.Take(context.Background(), "c", "e", []int{0, 1}, 5*time.Second)
	if err != nil || got[0] != in || got[1] != out {
		t.Fatalf("Take = %v, %v", got, err)
	}
}

func TestTakeTimeout(t *testing.T) {
	r := NewRegistry()
	in, inFar := pipe(t)
	r.Put(api.StdioHeader{ContainerID: "c", ExecID: "e", FD: 0}, in)
	start := time.Now()
	_, err := r.Take(context.Background(), "c", "e", []int{0, 1}, 50*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) || err.Error() != "stdout stream of c/e not opened within 50ms: context deadline exceeded" {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("timeout not honoured")
	}
	if !closed(inFar) || r.Len() != 0 {
		t.Fatal("the arrived stream was not closed")
	}
}

func TestTakeNothingDeclared(t *testing.T) {
	got, err := NewRegistry().Take(context.Background(), "c", "", nil, time.Millisecond)
	if err != nil || len(got) != 0 {
		t.Fatalf("Take = %v, %v", got, err)
	}
}

func TestPutReplacesAndDrop(t *testing.T) {
	r := NewRegistry()
	old, oldFar := pipe(t)
	nw, _ := pipe(t)
	other, otherFar := pipe(t)
	r.Put(api.StdioHeader{ContainerID: "c", FD: 1}, old)
	r.Put(api.StdioHeader{ContainerID: "c", FD: 1}, nw)
	if !closed(oldFar) {
		t.Fatal("a replaced stream was left open")
	}
	r.Put(api.StdioHeader{ContainerID: "d", ExecID: "x", FD: 0}, other)
	r.DropContainer("c")
	if r.Len() != 1 {
		t.Fatalf("%d streams left, want d's", r.Len())
	}
	r.Drop("d", "x")
	if !closed(otherFar) || r.Len() != 0 {
		t.Fatal("Drop left a stream")
	}
}

func TestTakeCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewRegistry().Take(ctx, "c", "", []int{1}, time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}
