package vm

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/vm/phase"
)

// bootSeen is what the host saw of a boot: the VMM listening on the
// agent socket, the agent's answer and what it said of its own boot.
type bootSeen struct {
	listening, answered time.Time
	pong                *api.PingResponse
}

// bootReached names the boot phase a boot that failed had reached.
func (v *VM) bootReached() string {
	if v.boot.listening.IsZero() {
		return fmt.Sprintf("boot phase reached: %s; the VMM never listened on the agent socket", phase.VMMStart)
	}
	return fmt.Sprintf("boot phase reached: %s; the VMM runs, its guest's kernel or agent never answered", phase.KernelBoot)
}

// placeBoot ends the VMM's start and places the guest's boot phases in
// the task's recorder. The guest's clock readings (Ping) are mapped onto
// the host's by its answer, made just before it arrived; the recorder keeps
// them within what the host saw, so a guest that lies about them only
// misplaces its own phases. Without an answer the boot reached the guest's
// kernel once the VMM listened, and stays there.
func (v *VM) placeBoot(ctx context.Context) {
	rec, b := phase.From(ctx), v.boot
	switch {
	case rec == nil || b.listening.IsZero():
		return
	case b.pong == nil || b.pong.GetNowNs() == 0:
		rec.BeginAt(ctx, phase.KernelBoot, b.listening)
		return
	}
	p := b.pong
	zero := b.answered.Add(-time.Duration(p.GetNowNs()))
	at := func(ns uint64) time.Time { return zero.Add(time.Duration(ns)) }
	exec := p.GetInitExecNs()
	if exec == 0 || exec > p.GetAgentMainNs() {
		exec = p.GetAgentMainNs()
	}
	rec.BeginAt(ctx, phase.KernelBoot, at(0))
	rec.BeginAt(ctx, phase.AgentReady, at(exec))
	rec.Annotate(
		attribute.Float64("msb.agent.start_ms", guestMs(p.GetAgentMainNs(), exec)),
		attribute.Float64("msb.agent.setup_ms", guestMs(p.GetServingNs(), p.GetAgentMainNs())),
		attribute.Float64("msb.agent.answer_ms", guestMs(p.GetNowNs(), p.GetServingNs())),
	)
}

// guestMs is b − a of two guest clock readings, in milliseconds.
func guestMs(b, a uint64) float64 {
	if b < a {
		return 0
	}
	return float64((b-a)/1000) / 1000
}
