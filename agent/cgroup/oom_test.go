package cgroup

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// fakeGroup is a directory with the given cgroup files, standing in for
// a group where no root or controller is at hand.
func fakeGroup(t *testing.T, files map[string]string) *Group {
	t.Helper()
	g := &Group{Path: filepath.Join(t.TempDir(), "c1")}
	if err := os.Mkdir(g.Path, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		p := filepath.Join(g.Path, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

// rewrite rewrites a file in place, as the kernel does: a truncate would
// let a reader see it empty.
func rewrite(t *testing.T, g *Group, name, data string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(g.Path, name), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
}

func fmtEvents(n int) string {
	return fmt.Sprintf("low 0\nhigh 0\nmax 3\noom 2\noom_kill %d\noom_group_kill 0\n", n)
}

func TestOOMKills(t *testing.T) {
	g := fakeGroup(t, map[string]string{"memory.events": fmtEvents(2)})
	if n, err := g.OOMKills(); err != nil || n != 2 {
		t.Fatalf("OOMKills = %d, %v", n, err)
	}
	bare := fakeGroup(t, nil)
	if _, err := bare.OOMKills(); !errdefs.IsNotImplemented(err) {
		t.Fatalf("without memory.events: %v", err)
	}
	bad := fakeGroup(t, map[string]string{"memory.events": "oom_kill x\n"})
	if _, err := bad.OOMKills(); err == nil {
		t.Fatal("a malformed memory.events was accepted")
	}
}

func TestWaitOOMKills(t *testing.T) {
	ctx := context.Background()
	g := fakeGroup(t, map[string]string{"memory.events": fmtEvents(1)})
	// Already past seen: no wait.
	if n, err := g.WaitOOMKills(ctx, 0); err != nil || n != 1 {
		t.Fatalf("past seen: %d, %v", n, err)
	}
	got := make(chan error, 1)
	var n uint64
	go func() {
		var err error
		n, err = g.WaitOOMKills(ctx, 1)
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("returned before a change: %d, %v", n, err)
	case <-time.After(100 * time.Millisecond):
	}
	rewrite(t, g, "memory.events", fmtEvents(1)) // a change that is not a new kill
	rewrite(t, g, "memory.events", fmtEvents(3))
	select {
	case err := <-got:
		if err != nil || n != 3 {
			t.Fatalf("after a kill: %d, %v", n, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the change was not noticed")
	}
}

func TestWaitOOMKillsEnds(t *testing.T) {
	g := fakeGroup(t, map[string]string{"memory.events": fmtEvents(0)})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := g.WaitOOMKills(ctx, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := g.WaitOOMKills(context.Background(), 0)
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	os.Remove(filepath.Join(g.Path, "memory.events"))
	select {
	case err := <-got:
		if !errdefs.IsNotFound(err) {
			t.Fatalf("after removal: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the removal was not noticed")
	}
	if _, err := fakeGroup(t, nil).WaitOOMKills(context.Background(), 0); !errdefs.IsNotImplemented(err) {
		t.Fatalf("without memory.events: %v", err)
	}
}

func inotifyEvent(mask uint32, name string) []byte {
	b := make([]byte, unix.SizeofInotifyEvent+len(name))
	binary.NativeEndian.PutUint32(b[4:], mask)
	binary.NativeEndian.PutUint32(b[12:], uint32(len(name)))
	copy(b[unix.SizeofInotifyEvent:], name)
	return b
}

func TestRemoved(t *testing.T) {
	modify := inotifyEvent(unix.IN_MODIFY, "")
	named := inotifyEvent(unix.IN_MODIFY, "memory.events\x00\x00\x00")
	for _, tc := range []struct {
		b    []byte
		want bool
	}{
		{nil, false},
		{modify, false},
		{append(append([]byte{}, named...), modify...), false},
		{append(append([]byte{}, named...), inotifyEvent(unix.IN_IGNORED, "")...), true},
		{inotifyEvent(unix.IN_DELETE_SELF, ""), true},
		{modify[:8], false}, // truncated
	} {
		if got := removed(tc.b); got != tc.want {
			t.Errorf("removed(%x) = %v, want %v", tc.b, got, tc.want)
		}
	}
}
