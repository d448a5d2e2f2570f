package phase

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/containerd/log"
)

// tasks holds each task's recorder between the shim's calls (Create,
// Start, Delete).
var tasks = struct {
	sync.Mutex
	m map[string]*Recorder
}{m: map[string]*Recorder{}}

// For returns the recorder of task, made at its first use; Finish forgets
// it.
func For(task string) *Recorder {
	tasks.Lock()
	defer tasks.Unlock()
	r := tasks.m[task]
	if r == nil {
		r = New(task)
		tasks.m[task] = r
	}
	return r
}

// Finish ends the task's phase in progress (failed when err is not nil),
// logs its phases in one debug line and forgets the task.
func Finish(ctx context.Context, task string, err error) {
	tasks.Lock()
	r := tasks.m[task]
	delete(tasks.m, task)
	tasks.Unlock()
	if r == nil {
		return
	}
	r.End(err)
	log.G(ctx).WithFields(r.Fields()).Debug(r.Line())
}

// Fields are the task's phases as log fields: one per phase ended, its
// duration in milliseconds, and "phase_failed" naming the phase an error
// ended.
func (r *Recorder) Fields() log.Fields {
	f := log.Fields{"task": r.task}
	for _, rec := range r.Records() {
		f[string(rec.Name)+"_ms"] = ms(rec.Duration())
		if rec.Err != nil {
			f["phase_failed"] = string(rec.Name)
		}
	}
	return f
}

// Line says, in phase order, how long each phase took, e.g. "phases:
// host_prepare=12.1ms vmm_start=40.3ms …"; a failed phase is marked
// "(failed)".
func (r *Recorder) Line() string {
	var b strings.Builder
	b.WriteString("phases:")
	for _, rec := range r.Records() {
		fmt.Fprintf(&b, " %s=%.1fms", rec.Name, ms(rec.Duration()))
		if rec.Err != nil {
			b.WriteString("(failed)")
		}
	}
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
