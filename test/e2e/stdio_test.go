//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// stdioCase is a process whose stdio a test drives: the init process or
// an exec, with or without a terminal.
type stdioCase struct {
	name      string
	exec, tty bool
}

var stdioCases = []stdioCase{
	{"init", false, false}, {"init-tty", false, true}, {"exec", true, false}, {"exec-tty", true, true},
}

// TestStdinReattach: a client that closes its end of the stdin FIFO
// without CloseIO detaches (ctr task attach, nerdctl attach, kubectl
// attach do so); the process keeps its stdin, a client that opens the FIFO
// again writes to it, and only CloseIO ends it: EOF, or with a terminal a
// hangup.
func TestStdinReattach(t *testing.T) {
	for _, tc := range stdioCases {
		t.Run(tc.name, func(t *testing.T) { testStdinReattach(t, tc) })
	}
}

func testStdinReattach(t *testing.T, tc stdioCase) {
	c, ctx := goClient(t)
	id := newID(t)
	dir := t.TempDir()
	cfg := cio.Config{Stdin: filepath.Join(dir, "in"), Stdout: filepath.Join(dir, "out"), Terminal: tc.tty}
	if !tc.tty {
		cfg.Stderr = filepath.Join(dir, "err")
	}
	// No closer: the FIFOs outlive the first client, as ctr's do when it
	// detaches.
	dio, err := cio.NewDirectIO(ctx, cio.NewFIFOSet(cfg, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer dio.Close()
	var out syncBuffer
	go io.Copy(&out, dio.Stdout) //nolint:errcheck // ends when the shim closes the FIFO
	if dio.Stderr != nil {
		go io.Copy(io.Discard, dio.Stderr) //nolint:errcheck
	}
	p, statusC := startCat(t, c, ctx, id, tc, func(string) (cio.IO, error) { return dio, nil })

	write(t, dio.Stdin, "one\n")
	waitEcho(t, &out, statusC, "one")
	// Detach: the first writer goes, without CloseIO.
	dio.Stdin.Close()
	w, err := os.OpenFile(cfg.Stdin, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("re-attach to stdin: %v (nobody reads the FIFO any more)", err)
	}
	defer w.Close()
	write(t, w, "two\n")
	waitEcho(t, &out, statusC, "two")
	w.Close()
	if err := p.CloseIO(ctx, containerd.WithStdinCloser); err != nil {
		t.Fatalf("CloseIO: %v", err)
	}
	// Without a terminal the process reads EOF; a terminal is hung up
	// (runc's shim closes the console then), which ends cat too.
	st := awaitExit(t, statusC)
	if !tc.tty && st.ExitCode() != 0 {
		t.Fatalf("cat should exit 0 at the EOF that CloseIO delivers; exit %d, output %q", st.ExitCode(), out.String())
	}
	if _, err := p.Delete(ctx); err != nil {
		t.Fatalf("delete: %v", err)
	}
}

// startCat starts cat as the init process (tc.exec unset) or as an exec
// in a container whose init sleeps, with the stdio creator makes.
func startCat(t *testing.T, c *containerd.Client, ctx context.Context, id string, tc stdioCase, creator cio.Creator) (containerd.Process, <-chan containerd.ExitStatus) {
	t.Helper()
	var p containerd.Process
	if !tc.exec {
		task, err := goContainer(t, c, ctx, id, tc.tty, []string{"cat"}).NewTask(ctx, creator)
		if err != nil {
			t.Fatalf("new task: %v", err)
		}
		p = task
	} else {
		cont := goContainer(t, c, ctx, id, false, []string{"sleep", "100000"})
		task, err := cont.NewTask(ctx, cio.NullIO)
		if err != nil {
			t.Fatalf("new task: %v", err)
		}
		if err := task.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		if p, err = task.Exec(ctx, "cat", execSpec(t, ctx, cont, tc.tty, "cat"), creator); err != nil {
			t.Fatalf("exec: %v", err)
		}
	}
	statusC, err := p.Wait(ctx)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	return p, statusC
}

func write(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatalf("write %q to stdin: %v", s, err)
	}
}

// waitEcho waits until the output holds s; it fails if the process exits
// first (it took the detach for the end of its stdin) or s does not come.
func waitEcho(t *testing.T, out *syncBuffer, statusC <-chan containerd.ExitStatus, s string) {
	t.Helper()
	deadline := time.After(ctrTimeout)
	for !strings.Contains(out.String(), s) {
		select {
		case st := <-statusC:
			t.Fatalf("the process exited (%d) before echoing %q; output %q", st.ExitCode(), s, out.String())
		case <-deadline:
			t.Fatalf("no echo of %q after %v; output %q", s, ctrTimeout, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func awaitExit(t *testing.T, statusC <-chan containerd.ExitStatus) containerd.ExitStatus {
	t.Helper()
	select {
	case st := <-statusC:
		return st
	case <-time.After(ctrTimeout):
		t.Fatalf("no exit after %v", ctrTimeout)
	}
	return containerd.ExitStatus{}
}

// fastExitSize is what each process of TestFastExitOutput writes: a file
// of random bytes, bound into the container, that it copies to stdout
// (cat is quick even under emulation; a generator in the container is not).
const fastExitSize = 8 << 20

// TestFastExitOutput: an init and an exec each write 8 MiB and exit at
// once, and the client deletes the process right after Wait returns (the
// containerd client closes its FIFO readers then). Every byte arrives, in
// order, every time: the exit is reported only once the output is in its
// FIFO. MSB_E2E_FAST_EXIT_RUNS (default 50) runs of each.
func TestFastExitOutput(t *testing.T) {
	runs, err := strconv.Atoi(envOr("MSB_E2E_FAST_EXIT_RUNS", "50"))
	if err != nil {
		t.Fatalf("MSB_E2E_FAST_EXIT_RUNS: %v", err)
	}
	dir := t.TempDir()
	want := make([]byte, fastExitSize)
	if _, err := rand.Read(want); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	data := oci.WithMounts([]specs.Mount{{Destination: "/fast", Type: "bind", Source: dir, Options: []string{"rbind", "ro"}}})
	cmd := []string{"cat", "/fast/data"}
	t.Run("init", func(t *testing.T) {
		c, ctx := goClient(t)
		cont := goContainer(t, c, ctx, newID(t), false, cmd, data)
		for i := range runs {
			var out, errOut bytes.Buffer
			task, err := cont.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, &out, &errOut)))
			if err != nil {
				t.Fatalf("run %d: new task: %v", i, err)
			}
			checkFastExit(t, ctx, i, task, task.Delete, want, &out, &errOut)
		}
	})
	t.Run("exec", func(t *testing.T) {
		c, ctx := goClient(t)
		cont := goContainer(t, c, ctx, newID(t), false, []string{"sleep", "100000"}, data)
		task, err := cont.NewTask(ctx, cio.NullIO)
		if err != nil {
			t.Fatalf("new task: %v", err)
		}
		if err := task.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		spec := execSpec(t, ctx, cont, false, cmd...)
		for i := range runs {
			var out, errOut bytes.Buffer
			p, err := task.Exec(ctx, fmt.Sprintf("fast%d", i), spec, cio.NewCreator(cio.WithStreams(nil, &out, &errOut)))
			if err != nil {
				t.Fatalf("run %d: exec: %v", i, err)
			}
			checkFastExit(t, ctx, i, p, p.Delete, want, &out, &errOut)
		}
	})
}

// checkFastExit starts p, deletes it as soon as Wait returns and compares
// what arrived with want.
func checkFastExit(t *testing.T, ctx context.Context, run int, p containerd.Process,
	del func(context.Context, ...containerd.ProcessDeleteOpts) (*containerd.ExitStatus, error), want []byte, out, errOut *bytes.Buffer) {
	t.Helper()
	statusC, err := p.Wait(ctx)
	if err != nil {
		t.Fatalf("run %d: wait: %v", run, err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatalf("run %d: start: %v", run, err)
	}
	st := awaitExit(t, statusC)
	if _, err := del(ctx); err != nil {
		t.Fatalf("run %d: delete: %v", run, err)
	}
	if st.ExitCode() != 0 || errOut.Len() > 0 {
		t.Fatalf("run %d: exit %d, stderr %q", run, st.ExitCode(), errOut.String())
	}
	got := out.Bytes()
	if len(got) != len(want) || crc32.ChecksumIEEE(got) != crc32.ChecksumIEEE(want) {
		t.Fatalf("run %d: got %d bytes (crc32 %08x), want %d (crc32 %08x)",
			run, len(got), crc32.ChecksumIEEE(got), len(want), crc32.ChecksumIEEE(want))
	}
}
