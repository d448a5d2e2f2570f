//go:build vmtest

package vm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/msb-runtime/msb/agent/api"
)

// backends runs a test on the auto backend (QEMU TCG where there is no
// hardware virtualization) and on krun, which only boots with hardware
// virtualization and is skipped loudly elsewhere.
func backends(t *testing.T, fn func(t *testing.T, backend string)) {
	t.Run("auto", func(t *testing.T) { fn(t, BackendAuto) })
	t.Run("krun", func(t *testing.T) {
		if host := DetectHostVirt(); !host.Hardware {
			t.Skipf("SKIP krun backend: %s", host.Reason)
		}
		fn(t, BackendKrun)
	})
}

func TestVMContainer(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		f := boot(t, backend)
		t.Logf("backend: %s", f.vm.Backend)

		t.Run("merged view", func(t *testing.T) {
			r := f.run(t, "view", "sh", "-c", "cat /l2 /etc/kept; ls /opq; test -e /etc/gone && echo gone-visible; exit 0")
			if want := "from l2\nkept\nnew\n"; r.stdout != want || r.status != 0 {
				t.Fatalf("got %q (status %d, stderr %q), want %q", r.stdout, r.status, r.stderr, want)
			}
		})
		t.Run("stdout and stderr apart", func(t *testing.T) {
			r := f.run(t, "streams", "sh", "-c", "echo out; echo err >&2")
			if r.stdout != "out\n" || r.stderr != "err\n" {
				t.Fatalf("stdout %q stderr %q", r.stdout, r.stderr)
			}
		})
		t.Run("stdin", func(t *testing.T) {
			in := "line one\nline two\n"
			r := f.start(t, "stdin", &in, "cat")()
			if r.stdout != in || r.status != 0 {
				t.Fatalf("cat echoed %q (status %d)", r.stdout, r.status)
			}
		})
		t.Run("exit 7", func(t *testing.T) {
			if r := f.run(t, "exit7", "sh", "-c", "exit 7"); r.status != 7 {
				t.Fatalf("status %d, want 7", r.status)
			}
		})
		t.Run("SIGKILL gives 137", func(t *testing.T) {
			wait := f.start(t, "sleeper", nil, "sleep", "100")
			_, err := f.vm.Agent.SignalProcess(context.Background(), &api.SignalProcessRequest{ContainerId: "c1", ExecId: "sleeper", Signal: uint32(syscall.SIGKILL)})
			must(t, err)
			if r := wait(); r.status != 137 {
				t.Fatalf("status %d, want 137", r.status)
			}
		})
		t.Run("guest kernel", func(t *testing.T) {
			r := f.run(t, "uname", "uname", "-r")
			host, _ := os.ReadFile("/proc/sys/kernel/osrelease")
			if strings.TrimSpace(r.stdout) == "" || strings.TrimSpace(r.stdout) == strings.TrimSpace(string(host)) {
				t.Fatalf("guest kernel %q vs host %q: not a VM?", r.stdout, host)
			}
		})
		t.Run("missing executable", func(t *testing.T) {
			proc := []byte(`{"args":["/bin/nosuchbin"],"cwd":"/","env":["PATH=/bin"]}`)
			_, err := f.vm.Agent.StartProcess(context.Background(), &api.StartProcessRequest{ContainerId: "c1", ExecId: "missing", Process: proc})
			if err == nil || !strings.Contains(err.Error(), "nosuchbin") {
				t.Fatalf("error %v should name the missing executable", err)
			}
		})

		// A write lands in the ext4 upper; the EROFS layers never change.
		r := f.run(t, "write", "sh", "-c", "echo persisted > /written && sync")
		if r.status != 0 {
			t.Fatalf("write failed: %d %q", r.status, r.stderr)
		}
		if err := f.vm.Shutdown(context.Background()); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		got := sh(t, tool(t, "debugfs"), "-R", "cat /upper/written", f.upper)
		if !strings.Contains(got, "persisted") {
			t.Fatalf("ext4 upper lacks the guest's write: %q", got)
		}
		for p, want := range f.sums {
			if sum(t, p) != want {
				t.Errorf("%s changed", p)
			}
		}
		if l := leftovers(f.dir); len(l) > 0 {
			t.Errorf("processes left: %v", l)
		}
	})
}

func TestVMBadInput(t *testing.T) {
	ctx := context.Background()
	t.Run("missing disk file", func(t *testing.T) {
		dir := t.TempDir()
		s := baseSpec(t, dir)
		s.Disks = []Disk{{ID: "l1", Path: filepath.Join(dir, "absent.erofs"), Format: "raw", ReadOnly: true}}
		_, err := Start(ctx, testOptions(BackendAuto), s)
		if err == nil || !strings.Contains(err.Error(), "absent.erofs") {
			t.Fatalf("error %v should name the missing file", err)
		}
		noneLeft(t, dir)
	})
	t.Run("zero memory", func(t *testing.T) {
		dir := t.TempDir()
		s := baseSpec(t, dir)
		s.MemoryMiB = 0
		_, err := Start(ctx, testOptions(BackendAuto), s)
		if err == nil || !strings.Contains(err.Error(), "memory 0 MiB") {
			t.Fatalf("error %v should name the memory size", err)
		}
		noneLeft(t, dir)
	})
	t.Run("corrupt erofs", func(t *testing.T) {
		dir := t.TempDir()
		bad := filepath.Join(dir, "bad.erofs")
		must(t, os.WriteFile(bad, make([]byte, 1<<20), 0o644))
		s := baseSpec(t, dir)
		s.Disks = []Disk{{ID: "bad", Path: bad, Format: "raw", ReadOnly: true}}
		v, err := Start(ctx, testOptions(BackendAuto), s)
		must(t, err)
		defer v.Kill()
		_, err = v.Agent.CreateContainer(ctx, &api.CreateContainerRequest{Id: "c1", Spec: []byte(`{"ociVersion":"1.2.0","root":{"path":"/run/msb/c/c1/layers/0"}}`),
			Rootfs: []*api.Mount{{Type: "erofs", Source: "disk:bad", Target: "/run/msb/c/c1/layers/0", Options: []string{"ro"}}}})
		if err == nil || !strings.Contains(err.Error(), "erofs") {
			t.Fatalf("error %v should say the erofs mount failed", err)
		}
		// The VM survives a bad container: it still answers.
		if _, err := v.Agent.Ping(ctx, &api.PingRequest{}); err != nil {
			t.Fatalf("agent gone after a bad mount: %v", err)
		}
		must(t, v.Shutdown(ctx))
		noneLeft(t, dir)
	})
	t.Run("krun without hardware virtualization", func(t *testing.T) {
		if host := DetectHostVirt(); host.Hardware {
			t.Skip("this host has hardware virtualization")
		}
		if _, err := os.Stat(vmmPath()); err != nil {
			t.Fatalf("msb-vmm not installed: %v", err)
		}
		dir := t.TempDir()
		began := time.Now()
		_, err := Start(ctx, testOptions(BackendKrun), baseSpec(t, dir))
		if err == nil || !strings.Contains(err.Error(), "hardware virtualization") {
			t.Fatalf("error %v should say hardware virtualization is missing", err)
		}
		if d := time.Since(began); d > 5*time.Second {
			t.Errorf("failing took %s", d)
		}
		noneLeft(t, dir)
	})
	t.Run("VMM killed", func(t *testing.T) {
		dir := t.TempDir()
		v, err := Start(ctx, testOptions(BackendAuto), baseSpec(t, dir))
		must(t, err)
		must(t, syscall.Kill(v.Pid(), syscall.SIGKILL))
		select {
		case <-v.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("VM end not noticed")
		}
		if err := v.Err(); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("end error %v should say it was killed", err)
		}
		v.Kill()
		noneLeft(t, dir)
	})
}

func noneLeft(t *testing.T, dir string) {
	t.Helper()
	// Give the kernel a moment to reap what was just killed.
	deadline := time.Now().Add(2 * time.Second)
	for len(leftovers(dir)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if l := leftovers(dir); len(l) > 0 {
		t.Errorf("processes left: %v", l)
	}
	if _, err := os.Stat(filepath.Join(dir, "agent.sock")); err == nil {
		t.Error("agent socket left behind")
	}
}
