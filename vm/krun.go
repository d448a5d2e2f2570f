package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// krun runs msb-vmm, our launcher on libkrun (the msb_krun crate). It
// needs hardware virtualization; msb-vmm checks for it and fails at once,
// with a clear error in its error file, where there is none.
type krun struct{ opts Options }

func (k *krun) Name() string { return "krun" }

func (k *krun) launch(ctx context.Context, spec *Spec, files runFiles) (*vmm, error) {
	s := *spec
	s.ErrorFile = files.vmmError
	s.ConsoleLog = files.console
	if err := writeJSON(files.vmmSpec, &s); err != nil {
		return nil, fmt.Errorf("write msb-vmm spec: %w", err)
	}
	args := []string{"--spec", files.vmmSpec}
	if k.opts.DieWithParent {
		args = append(args, "--die-with-parent")
	}
	v := &vmm{name: "msb-vmm", cmd: exec.Command(k.opts.VMM, args...)}
	// msb-vmm jails itself (vm/msb-vmm/src/jail.rs) as PID 1 of these.
	v.cmd.SysProcAttr = vmmNamespaces(spec, syscall.CLONE_NEWPID)
	v.explain = func() error { return readVMMError(files.vmmError) }
	if err := v.start(files.vmmLog, k.opts.DieWithParent); err != nil {
		return nil, err
	}
	return v, nil
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// readVMMError returns the error msb-vmm reported, or nil if it wrote none.
func readVMMError(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil || e.Error == "" {
		return errors.New("msb-vmm wrote an unreadable error file")
	}
	return errors.New(e.Error)
}
