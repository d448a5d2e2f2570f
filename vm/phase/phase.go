// Package phase times the phases of a task's life in the shim (host
// preparation, VMM start, guest kernel boot, agent ready, guest mounts,
// process start, teardown) and reports them two ways: as OpenTelemetry
// spans, children of the span of the containerd call that ran them (the
// shim's otelttrpc interceptor puts containerd's trace context in the
// call's context), and as one debug log line per task.
//
// The shim and package vm both record into the task's Recorder, which
// travels in the context. A phase lasts until the next one begins, so the
// phases of a call add up to the call; a span is made once its phase has
// ended, which lets the VM's boot phases be placed after the fact, when the
// guest's own clock readings arrive.
package phase

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Name is one phase.
type Name string

// The phases, in the order a task goes through them.
const (
	// HostPrepare: the OCI spec, the root's disks and host mounts, the VM's
	// share, network namespace and tap, up to the VMM's start.
	HostPrepare Name = "host_prepare"
	// VMMStart: the VMM (and virtiofsd) starting until the guest's kernel
	// runs.
	VMMStart Name = "vmm_start"
	// KernelBoot: the guest kernel until it starts /init (msb-agent).
	KernelBoot Name = "kernel_boot"
	// AgentReady: msb-agent's start and its mounts until it answers Ping.
	AgentReady Name = "agent_ready"
	// GuestMounts: the container's network and root set up in the guest
	// (CreateContainer).
	GuestMounts Name = "guest_mounts"
	// ProcessStart: stdio streams opened and the process started.
	ProcessStart Name = "process_start"
	// Teardown: Delete: the container removed in the guest, the VM stopped
	// and the host cleaned.
	Teardown Name = "teardown"
)

// All lists every phase in order.
var All = []Name{HostPrepare, VMMStart, KernelBoot, AgentReady, GuestMounts, ProcessStart, Teardown}

// TracerName names msb's tracer.
const TracerName = "github.com/msb-runtime/msb"

// SpanName is the span a phase is reported as.
func SpanName(n Name) string { return "msb." + string(n) }

// Record is one finished phase.
type Record struct {
	Name       Name
	Start, End time.Time
	// Err is why the phase failed; nil when it completed.
	Err error
}

// Duration is how long the phase took.
func (r Record) Duration() time.Duration { return r.End.Sub(r.Start) }

// Recorder times the phases of one task. The nil Recorder records
// nothing, so code that runs without one (tests, tools) needs no checks.
type Recorder struct {
	task string

	mu   sync.Mutex
	cur  *open
	done []Record
}

// open is the phase in progress.
type open struct {
	name  Name
	ctx   context.Context // its span's parent
	start time.Time
	attrs []attribute.KeyValue
}

// New makes the recorder of a task (a container id, or id/exec for an
// exec'd process).
func New(task string) *Recorder { return &Recorder{task: task} }

type ctxKey struct{}

// With returns ctx carrying r.
func With(ctx context.Context, r *Recorder) context.Context {
	return context.WithValue(ctx, ctxKey{}, r)
}

// From returns the recorder ctx carries, or nil.
func From(ctx context.Context) *Recorder {
	r, _ := ctx.Value(ctxKey{}).(*Recorder)
	return r
}

// Begin ends the phase in progress now and starts name, whose span will
// be a child of ctx's. Beginning the phase already in progress changes
// nothing.
func (r *Recorder) Begin(ctx context.Context, name Name) { r.BeginAt(ctx, name, time.Now()) }

// BeginAt is Begin at t, which is kept between the start of the phase in
// progress and now: t may come from a clock the host does not trust.
func (r *Recorder) BeginAt(ctx context.Context, name Name, t time.Time) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != nil && r.cur.name == name {
		return
	}
	if now := time.Now(); t.After(now) {
		t = now
	}
	if r.cur != nil {
		if t.Before(r.cur.start) {
			t = r.cur.start
		}
		r.finish(t, nil)
	}
	r.cur = &open{name: name, ctx: context.WithoutCancel(ctx), start: t}
}

// End ends the phase in progress, as failed when err is not nil.
func (r *Recorder) End(err error) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != nil {
		r.finish(time.Now(), err)
	}
}

// Annotate adds attributes to the span of the phase in progress.
func (r *Recorder) Annotate(kv ...attribute.KeyValue) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != nil {
		r.cur.attrs = append(r.cur.attrs, kv...)
	}
}

// Current is the phase in progress, "" when none is.
func (r *Recorder) Current() Name {
	if r == nil {
		return ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur == nil {
		return ""
	}
	return r.cur.name
}

// Records are the phases ended so far, in order.
func (r *Recorder) Records() []Record {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Record(nil), r.done...)
}

// finish ends the phase in progress at end and emits its span; r.mu is
// held.
func (r *Recorder) finish(end time.Time, err error) {
	o := r.cur
	r.cur = nil
	r.done = append(r.done, Record{Name: o.name, Start: o.start, End: end, Err: err})
	attrs := append([]attribute.KeyValue{
		attribute.String("msb.task", r.task), attribute.String("msb.phase", string(o.name)),
	}, o.attrs...)
	_, span := otel.Tracer(TracerName).Start(o.ctx, SpanName(o.name),
		trace.WithTimestamp(o.start), trace.WithAttributes(attrs...))
	if err != nil {
		span.RecordError(err, trace.WithTimestamp(end))
		span.SetStatus(codes.Error, err.Error())
	}
	span.End(trace.WithTimestamp(end))
}
