package task

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"time"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// defaultHookTimeout bounds a hook that sets no timeout of its own.
const defaultHookTimeout = time.Minute

// runHooks runs OCI hooks on the host, in order, each with the container's
// state on stdin, as runc does. The state's pid is the VMM's: its network
// namespace is the one the VM's NIC is mirrored from.
func runHooks(ctx context.Context, kind string, hooks []specs.Hook, st specs.State) error {
	if len(hooks) == 0 {
		return nil
	}
	state, err := json.Marshal(st)
	if err != nil {
		return err
	}
	for i, h := range hooks {
		if err := runHook(ctx, h, state); err != nil {
			return fmt.Errorf("%s hook %d (%s): %w", kind, i, h.Path, err)
		}
	}
	return nil
}

func runHook(ctx context.Context, h specs.Hook, state []byte) error {
	timeout := defaultHookTimeout
	if h.Timeout != nil && *h.Timeout > 0 {
		timeout = time.Duration(*h.Timeout) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.Path)
	if len(h.Args) > 0 {
		cmd.Args = h.Args
	}
	cmd.Env = h.Env
	cmd.Stdin = bytes.NewReader(state)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(out.Bytes()))
	}
	if out.Len() > 0 {
		log.G(ctx).WithField("hook", h.Path).Debug(out.String())
	}
	return nil
}

// ociState is the state hooks get.
func ociState(c *container, status specs.ContainerState, pid uint32) specs.State {
	return specs.State{
		Version: specs.Version, ID: c.id, Status: status, Pid: int(pid),
		Bundle: c.bundle, Annotations: c.annotations,
	}
}

// runCreateHooks runs the container's host hooks that set up the VM's
// network namespace (prestart, createRuntime), with the VMM's pid.
func runCreateHooks(ctx context.Context, c *container, pid uint32) error {
	h := c.hooks
	if h == nil {
		return nil
	}
	st := ociState(c, specs.StateCreating, pid)
	if err := runHooks(ctx, "prestart", h.Prestart, st); err != nil { //nolint:staticcheck // Prestart is still run
		return err
	}
	return runHooks(ctx, "createRuntime", h.CreateRuntime, st)
}
