package phase

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// spans installs a tracer provider that keeps every ended span.
func spans(t *testing.T) *tracetest.SpanRecorder {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	return sr
}

// debugLog captures the standard logger's output at debug level.
func debugLog(t *testing.T) *bytes.Buffer {
	var buf bytes.Buffer
	l := log.L.Logger
	out, lvl := l.Out, l.GetLevel()
	l.SetOutput(&buf)
	l.SetLevel(logrus.DebugLevel)
	t.Cleanup(func() { l.SetOutput(out); l.SetLevel(lvl) })
	return &buf
}

// TestEveryPhase goes through every phase the way the shim's calls do
// (each call a span of containerd's trace) and checks that each phase is
// a span, child of its call's span, and named in the task's log line.
func TestEveryPhase(t *testing.T) {
	sr := spans(t)
	buf := debugLog(t)
	tr := otel.Tracer("containerd")
	call := func(name string, phases ...Name) {
		ctx, span := tr.Start(context.Background(), name)
		defer span.End()
		ctx = With(ctx, For("c1"))
		for _, p := range phases {
			From(ctx).Begin(ctx, p)
		}
		From(ctx).End(nil)
	}
	call("Create", HostPrepare, VMMStart, KernelBoot, AgentReady, GuestMounts)
	call("Start", ProcessStart)
	ctx, span := tr.Start(context.Background(), "Delete")
	ctx = With(ctx, For("c1"))
	From(ctx).Begin(ctx, Teardown)
	Finish(ctx, "c1", nil)
	span.End()

	parents := map[string]string{} // span id → name of containerd's calls
	var got []string
	for _, s := range sr.Ended() {
		if !strings.HasPrefix(s.Name(), "msb.") {
			parents[s.SpanContext().SpanID().String()] = s.Name()
		}
	}
	want := map[Name]string{HostPrepare: "Create", VMMStart: "Create", KernelBoot: "Create", AgentReady: "Create",
		GuestMounts: "Create", ProcessStart: "Start", Teardown: "Delete"}
	for _, s := range sr.Ended() {
		if !strings.HasPrefix(s.Name(), "msb.") {
			continue
		}
		got = append(got, s.Name())
		n := Name(strings.TrimPrefix(s.Name(), "msb."))
		if p := parents[s.Parent().SpanID().String()]; p != want[n] {
			t.Errorf("span %s: parent %q, want containerd's %q", s.Name(), p, want[n])
		}
		if s.Parent().TraceID() != s.SpanContext().TraceID() {
			t.Errorf("span %s is not in its call's trace", s.Name())
		}
	}
	var names []string
	for _, n := range All {
		names = append(names, SpanName(n))
	}
	if strings.Join(got, " ") != strings.Join(names, " ") {
		t.Errorf("spans %v, want %v", got, names)
	}
	line := buf.String()
	if strings.Count(line, "\n") != 1 || !strings.Contains(line, "level=debug") {
		t.Fatalf("want one debug line, got:\n%s", line)
	}
	for _, n := range All {
		if !strings.Contains(line, " "+string(n)+"=") || !strings.Contains(line, string(n)+"_ms=") {
			t.Errorf("log line does not name %s:\n%s", n, line)
		}
	}
	if For("c1").Current() != "" || len(For("c1").Records()) != 0 {
		t.Error("Finish left the task's recorder behind")
	}
	Finish(context.Background(), "c1", nil)
}

// TestFailedPhase: the phase an error ended is marked in its span and in
// the log line, and the phases after it do not appear.
func TestFailedPhase(t *testing.T) {
	sr := spans(t)
	buf := debugLog(t)
	ctx := With(context.Background(), For("c2"))
	From(ctx).Begin(ctx, HostPrepare)
	From(ctx).Begin(ctx, VMMStart)
	From(ctx).Begin(ctx, KernelBoot)
	Finish(ctx, "c2", errors.New("agent did not answer"))

	ended := sr.Ended()
	if len(ended) != 3 {
		t.Fatalf("%d spans, want 3", len(ended))
	}
	if s := ended[2]; s.Name() != SpanName(KernelBoot) || s.Status().Code != codes.Error ||
		!strings.Contains(s.Status().Description, "agent did not answer") {
		t.Errorf("last span %s status %v, want %s failed", s.Name(), s.Status(), SpanName(KernelBoot))
	}
	if ended[1].Status().Code == codes.Error {
		t.Errorf("%s marked failed", ended[1].Name())
	}
	line := buf.String()
	for _, want := range []string{"kernel_boot=", "(failed)", "phase_failed=kernel_boot"} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %q:\n%s", want, line)
		}
	}
	if strings.Contains(line, "agent_ready") {
		t.Errorf("log line names a phase never reached:\n%s", line)
	}
}

// TestBeginAtKeepsOrder: a time outside the phase in progress and now (a
// guest's clock) is clamped, so phases never overlap or end in the future.
func TestBeginAtKeepsOrder(t *testing.T) {
	r := New("c3")
	ctx := context.Background()
	r.Begin(ctx, VMMStart)
	start := r.cur.start
	r.BeginAt(ctx, KernelBoot, start.Add(-time.Hour))
	r.BeginAt(ctx, AgentReady, time.Now().Add(time.Hour))
	r.End(nil)
	recs := r.Records()
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	for i, rec := range recs {
		if rec.End.Before(rec.Start) {
			t.Errorf("%s ends before it starts", rec.Name)
		}
		if i > 0 && rec.Start.Before(recs[i-1].End) {
			t.Errorf("%s starts before %s ends", rec.Name, recs[i-1].Name)
		}
	}
	if !recs[1].Start.Equal(start) {
		t.Errorf("kernel_boot placed before the phase in progress began")
	}
	var nilRec *Recorder
	nilRec.Begin(ctx, HostPrepare) // records nothing, must not panic
	nilRec.End(nil)
	if From(ctx) != nil {
		t.Error("a context without a recorder has one")
	}
}
