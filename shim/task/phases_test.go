package task

import (
	"bytes"
	"context"
	"strings"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/msb-runtime/msb/vm/phase"
)

// Start and Delete time their phases as spans of the call's trace (what
// containerd's otelttrpc interceptor puts in the call's context), and the
// task's Delete logs one debug line with its phases. Create's phases need
// a VM: vm's TestVMBootPhases and hack/bench --phases cover them.
func TestPhaseSpans(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr)))
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	var buf bytes.Buffer
	l := log.L.Logger
	out, lvl := l.Out, l.GetLevel()
	l.SetOutput(&buf)
	l.SetLevel(logrus.DebugLevel)
	t.Cleanup(func() { l.SetOutput(out); l.SetLevel(lvl) })

	h := newHarness(t, newFakeAgent(), 0)
	call := func(name string, fn func(ctx context.Context)) string {
		ctx, span := otel.Tracer("containerd").Start(h.ctx(), name)
		defer span.End()
		fn(ctx)
		return span.SpanContext().SpanID().String()
	}
	startID := call("Start", func(ctx context.Context) { h.runCtx(ctx, "c1", stdio{}) })
	h.agent.exit("", 0)
	h.waitExit("c1", "")
	deleteID := call("Delete", func(ctx context.Context) {
		if _, err := h.s.Delete(ctx, &taskAPI.DeleteRequest{ID: "c1"}); err != nil {
			t.Fatalf("delete: %v", err)
		}
	})

	parents := map[string]string{}
	for _, s := range sr.Ended() {
		parents[s.Name()] = s.Parent().SpanID().String()
	}
	for name, want := range map[phase.Name]string{phase.ProcessStart: startID, phase.Teardown: deleteID} {
		got, ok := parents[phase.SpanName(name)]
		if !ok {
			t.Errorf("no span %s", phase.SpanName(name))
		} else if got != want {
			t.Errorf("span %s is not a child of its call's span", phase.SpanName(name))
		}
	}
	var lines []string
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, "phases:") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "level=debug") || !strings.Contains(lines[0], "task=c1") {
		t.Fatalf("want one debug line with the task's phases, got %q", lines)
	}
	for _, n := range []phase.Name{phase.ProcessStart, phase.Teardown} {
		if !strings.Contains(lines[0], " "+string(n)+"=") {
			t.Errorf("log line does not name %s: %s", n, lines[0])
		}
	}
}
