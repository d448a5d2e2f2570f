package vm

import (
	"context"
	"strings"
)

// Backend starts the VMM for a spec. The two backends boot the same guest
// with the same devices, so nothing above this package knows which ran.
type Backend interface {
	// Name says which backend and accelerator, e.g. "qemu (tcg)".
	Name() string
	launch(ctx context.Context, spec *Spec, files runFiles) (*vmm, error)
}

// baseCmdline boots libkrunfw's kernel from the boot disk into msb-agent.
// Both backends start from it; krun's own defaults come first there and
// later root= and init= words win.
var baseCmdline = []string{
	"console=hvc0", "root=/dev/vda", "rootfstype=erofs", "ro", "init=/init", "panic=-1", "quiet",
}

func cmdline(spec *Spec, extra ...string) string {
	words := append(append(append([]string{}, baseCmdline...), extra...), spec.KernelArgs...)
	return strings.Join(words, " ")
}
