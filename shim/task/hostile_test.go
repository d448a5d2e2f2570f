package task

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/core/runtime"
	ptypes "github.com/containerd/containerd/v2/pkg/protobuf/types"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/api"
)

// Each case is a guest that misbehaves on purpose; each asserts what the
// user sees (calls return, the task ends, the VM is gone) and, for the
// floods, that the shim's goroutines and heap stay bounded. The floods
// measure the whole process, so they do not run in parallel; the others
// wait out killGrace and do.

const killed = 128 + uint32(syscall.SIGKILL)

func (h *harness) kill(id, execID string, sig syscall.Signal) error {
	ctx, cancel := context.WithTimeout(h.ctx(), 2*testKillGrace)
	defer cancel()
	_, err := h.s.Kill(ctx, &taskAPI.KillRequest{ID: id, ExecID: execID, Signal: uint32(sig)})
	return err
}

// A guest that acknowledges SIGKILL and never reports the exit loses its
// VM: the task ends killed.
func TestHostileKillAcknowledgedNeverExits(t *testing.T) {
	t.Parallel()
	a := newFakeAgent()
	a.ignoreKill = true
	h := newHarness(t, a, 0)
	h.run("c1", stdio{})
	if err := h.kill("c1", "", syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if st := h.waitExit("c1", ""); st != killed {
		t.Fatalf("exit status %d, want %d", st, killed)
	}
	h.vmGone()
	h.flush()
	if n := h.pub.count(runtime.TaskExitEventTopic); n != 1 {
		t.Fatalf("%d exit events", n)
	}
}

// A guest that never answers the SIGKILL: Kill returns once the VM is
// killed, successfully, since the process is gone as asked.
func TestHostileKillNeverAnswered(t *testing.T) {
	t.Parallel()
	a := newFakeAgent()
	a.hangSignal = true
	h := newHarness(t, a, 0)
	h.run("c1", stdio{})
	if err := h.kill("c1", "", syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if st := h.waitExit("c1", ""); st != killed {
		t.Fatalf("exit status %d, want %d", st, killed)
	}
	h.vmGone()
}

// An honest guest's SIGKILL ends the process, not the VM, and an exec
// the guest does not report is settled when its container is deleted,
// with a Shutdown that never comes: Delete still returns, the VM killed.
func TestHostileShutdownNeverComes(t *testing.T) {
	t.Parallel()
	a := newFakeAgent()
	a.hangShutdown = true
	h := newHarness(t, a, 0)
	h.run("c1", stdio{})
	h.exec("c1", "e1")
	h.exec("c1", "e2")
	// Waiting from the start, as containerd does: a Wait that only comes
	// once Delete began finds no container.
	e2 := make(chan uint32, 1)
	go func() {
		st, err := h.wait("c1", "e2")
		if err != nil {
			t.Errorf("wait for the unreported exec: %v", err)
		}
		e2 <- st
	}()
	if err := h.kill("c1", "e1", syscall.SIGKILL); err != nil {
		t.Fatalf("kill exec: %v", err)
	}
	if st := h.waitExit("c1", "e1"); st != killed {
		t.Fatalf("exec exit status %d, want %d", st, killed)
	}
	a.exit("", 0)
	if st := h.waitExit("c1", ""); st != 0 {
		t.Fatalf("init exit status %d, want 0", st)
	}
	// Past the kill grace: the honest kill of e1 did not end the VM.
	select {
	case <-h.sb.Done():
		t.Fatal("an honest SIGKILL ended the VM")
	case <-time.After(testKillGrace + time.Second):
	}
	ctx, cancel := context.WithTimeout(h.ctx(), testKillGrace+stopTimeout+5*time.Second)
	defer cancel()
	r, err := h.s.Delete(ctx, &taskAPI.DeleteRequest{ID: "c1"})
	if err != nil || r.ExitStatus != 0 {
		t.Fatalf("delete: %v %v", r, err)
	}
	h.vmGone()
	if st := <-e2; st != killed {
		t.Fatalf("unreported exec exit status %d, want %d", st, killed)
	}
}

// exec starts an exec in container id.
func (h *harness) exec(id, execID string) {
	h.t.Helper()
	spec, _ := json.Marshal(specs.Process{Args: []string{"sleep", "1d"}, Cwd: "/"})
	r := &taskAPI.ExecProcessRequest{ID: id, ExecID: execID, Spec: &ptypes.Any{TypeUrl: "process", Value: spec}}
	if _, err := h.s.Exec(h.ctx(), r); err != nil {
		h.t.Fatalf("exec: %v", err)
	}
	if _, err := h.s.Start(h.ctx(), &taskAPI.StartRequest{ID: id, ExecID: execID}); err != nil {
		h.t.Fatalf("start exec: %v", err)
	}
}

// A guest that stops reading is given up once a write to it has waited
// channelTimeout: its task ends killed and its VM is gone.
func TestHostileStopsReading(t *testing.T) {
	t.Parallel()
	a := newFakeAgent()
	h := newHarness(t, a, 4096) // a small socket buffer, as QEMU's is soon full
	fifo := filepath.Join(t.TempDir(), "stdin")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	h.run("c1", stdio{stdin: fifo})
	h.guest.stopReading()
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	go w.Write(make([]byte, 1<<20)) //nolint:errcheck // stalls with the guest
	if st := h.waitExit("c1", ""); st != killed {
		t.Fatalf("exit status %d, want %d", st, killed)
	}
	h.vmGone()
	if err := h.sb.Err(); err == nil || !strings.Contains(err.Error(), "read nothing") {
		t.Fatalf("the VM ended with %v, want the guest's stall", err)
	}
}

// A guest whose WaitOOM answers at once with nothing new is polled with
// backoff; one whose count grows at every answer gets at most one event
// per oomEventInterval.
func TestHostileWaitOOM(t *testing.T) {
	t.Parallel()
	a := newFakeAgent()
	a.oomAnswer = func(seen uint64) uint64 { return seen }
	h := newHarness(t, a, 0)
	h.run("c1", stdio{})
	time.Sleep(1500 * time.Millisecond)
	// Back to back these would be thousands; with backoff about 5.
	if n := a.calls(); n > 20 {
		t.Fatalf("%d WaitOOM calls in 1.5s of answers with no news", n)
	}
	if n := h.pub.count(runtime.TaskOOMEventTopic); n != 0 {
		t.Fatalf("%d OOM events without a kill", n)
	}
	h.agent.mu.Lock()
	a.oomAnswer = func(seen uint64) uint64 { return seen + 1 }
	h.agent.mu.Unlock()
	time.Sleep(2500 * time.Millisecond)
	if n := h.pub.count(runtime.TaskOOMEventTopic); n < 1 || n > 5 {
		t.Fatalf("%d OOM events in 2.5s of a guest counting up at every answer", n)
	}
}

// yamux frame header (hashicorp/yamux spec.md).
func frame(typ uint8, flags uint16, id, length uint32) []byte {
	b := make([]byte, 12)
	b[1] = typ
	binary.BigEndian.PutUint16(b[2:], flags)
	binary.BigEndian.PutUint32(b[4:], id)
	binary.BigEndian.PutUint32(b[8:], length)
	return b
}

func streamFlood() []byte {
	var b bytes.Buffer
	data := make([]byte, 256<<10)
	for id := uint32(2); id < 2+2*256; id += 2 {
		b.Write(frame(0, 1, id, uint32(len(data)))) // SYN with a window of data
		b.Write(data)
	}
	return b.Bytes()
}

// Floods and garbage from the guest end the channel at once: the task
// ends killed, the VM is gone, and neither the shim's goroutines nor its
// heap grew with the flood (yamux alone would start a goroutine per ping
// and buffer 64 MiB of guest-opened streams).
func TestHostileFrames(t *testing.T) {
	for name, flood := range map[string][]byte{
		"ping flood":     bytes.Repeat(frame(2, 1, 0, 1), 100000),
		"stream flood":   streamFlood(),
		"garbage":        bytes.Repeat([]byte("\xde\xad\xbe\xef"), 1000),
		"oversized data": append(frame(0, 0, 1, 64<<20), make([]byte, 1<<20)...),
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, newFakeAgent(), 0)
			h.run("c1", stdio{})
			goroutines, heap := usage()
			go h.guest.raw(flood)
			if st := h.waitExit("c1", ""); st != killed {
				t.Fatalf("exit status %d, want %d", st, killed)
			}
			h.vmGone()
			if err := h.sb.Err(); !errors.Is(err, api.ErrProtocol) {
				t.Fatalf("the VM ended with %v, want a protocol violation", err)
			}
			g, m := usage()
			if g > goroutines+10 || m > heap+16<<20 {
				t.Fatalf("goroutines %d → %d, heap %d → %d MiB", goroutines, g, heap>>20, m>>20)
			}
		})
	}
}

func usage() (goroutines int, heap uint64) {
	goruntime.GC()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	return goruntime.NumGoroutine(), m.HeapAlloc
}
