package process

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		ws   unix.WaitStatus
		want uint32
	}{
		{0, 0},
		{3 << 8, 3},
		{255 << 8, 255},
		{unix.WaitStatus(unix.SIGKILL), 137},
		{unix.WaitStatus(unix.SIGTERM), 143},
		{unix.WaitStatus(unix.SIGSEGV) | 0x80, 139}, // core dumped
	} {
		if got := ExitStatus(tc.ws); got != tc.want {
			t.Errorf("ExitStatus(%#x) = %d, want %d", uint32(tc.ws), got, tc.want)
		}
	}
}

func TestConfigRoundTrip(t *testing.T) {
	umask := uint32(0o027)
	in := &childConfig{Root: "/run/c/rootfs", CgroupNS: true, Process: &specs.Process{
		Args: []string{"sh", "-c", "echo hi"}, Env: []string{"PATH=/bin", "A=b c"}, Cwd: "/work",
		User:    specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{5, 6}, Umask: &umask},
		Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 4096}},
	}}
	var buf bytes.Buffer
	if err := in.encode(&buf); err != nil {
		t.Fatal(err)
	}
	out, err := decodeConfig(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if out.Root != in.Root || !out.CgroupNS || strings.Join(out.Process.Args, "|") != "sh|-c|echo hi" ||
		*out.Process.User.Umask != umask || out.Process.User.AdditionalGids[1] != 6 || out.Process.Rlimits[0].Hard != 4096 {
		t.Fatalf("round trip changed the config: %+v", out)
	}
	if _, err := decodeConfig(strings.NewReader(`{"root":"/r","process":{"cwd":"/"}}`)); err == nil {
		t.Fatal("config without args accepted")
	}
	if _, err := decodeConfig(strings.NewReader(`{"process":{"args":["x"]}}`)); err == nil {
		t.Fatal("config without root accepted")
	}
}

func TestStateMachine(t *testing.T) {
	p := New("e1")
	if p.State() != Created {
		t.Fatalf("new process is %v", p.State())
	}
	if err := p.Signal(syscall.SIGTERM); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("signal to created: %v", err)
	}
	if err := p.Delete(); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("delete of created: %v", err)
	}
	if err := p.Resize(80, 24); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("resize of created: %v", err)
	}
	p.stopped(Exit{Status: 3, At: time.Now()})
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, ErrFinished) || !errdefs.IsNotFound(err) || err.Error() != "process already finished" {
		t.Fatalf("signal to stopped: %v", err)
	}
	if err := p.Resize(80, 24); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("resize without terminal: %v", err)
	}
	if err := p.Delete(); err != nil {
		t.Fatalf("delete of stopped: %v", err)
	}
	if err := p.Delete(); !errdefs.IsNotFound(err) {
		t.Fatalf("second delete: %v", err)
	}
	if err := p.Signal(syscall.SIGTERM); !errdefs.IsNotFound(err) {
		t.Fatalf("signal to deleted: %v", err)
	}
}

func TestStartWithoutArgsFails(t *testing.T) {
	p := New("")
	err := p.Start(Options{Root: "/", Spec: &specs.Process{}})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("start without args: %v", err)
	}
	if p.State() != Deleted {
		t.Fatalf("failed start left the process %v", p.State())
	}
	if _, err := p.Wait(context.Background()); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("wait after failed start: %v", err)
	}
	if err := p.Start(Options{Root: "/", Spec: &specs.Process{Args: []string{"true"}}}); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("second start: %v", err)
	}
}

func TestCapsFromSpec(t *testing.T) {
	caps, err := capsFromSpec(&specs.LinuxCapabilities{
		Bounding:  []string{"CAP_CHOWN", "CAP_KILL", "CAP_NOT_A_THING"},
		Effective: []string{"CAP_KILL"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := caps.StringCap(capability.BOUNDING); got != "chown, kill" {
		t.Fatalf("bounding = %q", got)
	}
	if c, _ := capsFromSpec(nil); c != nil {
		t.Fatal("nil capabilities should leave the process's own")
	}
}

func TestAbort(t *testing.T) {
	p := New("e")
	done := make(chan error, 1)
	go func() {
		_, err := p.Wait(context.Background())
		done <- err
	}()
	p.Abort(errdefs.ErrFailedPrecondition)
	if err := <-done; !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("wait after abort: %v", err)
	}
	p.Abort(errdefs.ErrFailedPrecondition) // idempotent
	if p.State() != Deleted {
		t.Fatalf("aborted process is %v", p.State())
	}
}
