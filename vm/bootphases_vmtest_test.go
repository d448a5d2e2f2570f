//go:build vmtest

package vm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/msb-runtime/msb/vm/phase"
)

// A boot records the VMM's start, the guest kernel's boot and the agent's
// start as phases of the task in the context, each a span: their names,
// not their durations, are checked.
func TestVMBootPhases(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		sr := tracetest.NewSpanRecorder()
		prev := otel.GetTracerProvider()
		otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr)))
		t.Cleanup(func() { otel.SetTracerProvider(prev) })

		dir := t.TempDir()
		rec := phase.New("vmtest")
		ctx := phase.With(context.Background(), rec)
		rec.Begin(ctx, phase.HostPrepare)
		v, err := Start(ctx, testOptions(backend), baseSpec(t, dir))
		if err != nil {
			t.Fatalf("start VM: %v", err)
		}
		defer v.Kill()
		if cur := rec.Current(); cur != phase.AgentReady {
			t.Errorf("phase in progress once the agent answered: %q, want %s", cur, phase.AgentReady)
		}
		rec.End(nil)
		want := []phase.Name{phase.HostPrepare, phase.VMMStart, phase.KernelBoot, phase.AgentReady}
		var got []phase.Name
		for _, r := range rec.Records() {
			got = append(got, r.Name)
		}
		if !equal(got, want) {
			t.Errorf("phases %v, want %v", got, want)
		}
		var spans []string
		for _, s := range sr.Ended() {
			spans = append(spans, s.Name())
		}
		if w := "msb.host_prepare msb.vmm_start msb.kernel_boot msb.agent_ready"; strings.Join(spans, " ") != w {
			t.Errorf("spans %v, want %s", spans, w)
		}
	})
}

func equal(a, b []phase.Name) bool { return strings.Join(names(a), " ") == strings.Join(names(b), " ") }

func names(ns []phase.Name) []string {
	var s []string
	for _, n := range ns {
		s = append(s, string(n))
	}
	return s
}

// A guest that never answers (its boot disk's /init prints a line and
// hangs) fails the boot at the boot timeout, and the error says which
// phase the boot reached and shows the console's last lines.
func TestVMBootHangs(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		dir := t.TempDir()
		root := filepath.Join(dir, "root")
		for _, d := range []string{"bin", "dev", "proc"} {
			must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
		}
		sh(t, "cp", "/bin/busybox", filepath.Join(root, "bin", "busybox"))
		for _, a := range []string{"sh", "sleep"} {
			must(t, os.Link(filepath.Join(root, "bin", "busybox"), filepath.Join(root, "bin", a)))
		}
		must(t, os.WriteFile(filepath.Join(root, "init"),
			[]byte("#!/bin/sh\necho 'hang-init: up, never answering'\nexec /bin/sleep 1000000\n"), 0o755))
		disk := filepath.Join(dir, "hang.erofs")
		sh(t, tool(t, "mkfs.erofs"), "--quiet", "-T0", disk, root)

		spec := baseSpec(t, dir)
		spec.BootDisk = disk
		opts := testOptions(backend)
		opts.BootTimeout = 15 * time.Second
		rec := phase.New("vmtest")
		ctx := phase.With(context.Background(), rec)
		v, err := Start(ctx, opts, spec)
		if err == nil {
			v.Kill()
			t.Fatal("a guest that never answers booted")
		}
		msg := err.Error()
		t.Logf("boot error (as expected):\n%s", msg)
		for _, want := range []string{
			"agent did not answer within 15s",
			"boot phase reached: kernel_boot",
			"console.log (tail)",
			"hang-init: up, never answering",
		} {
			if !strings.Contains(msg, want) {
				t.Errorf("boot error lacks %q:\n%s", want, msg)
			}
		}
		recs := rec.Records()
		if n := len(recs); n == 0 || recs[n-1].Name != phase.KernelBoot || recs[n-1].Err == nil {
			t.Errorf("phases %+v: want the last one, kernel_boot, failed", recs)
		}
		if left := leftovers(dir); len(left) > 0 {
			t.Errorf("left running: %v", left)
		}
	})
}
