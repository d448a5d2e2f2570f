package oci

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Process checks what the guest needs of a process before it is sent:
// arguments (a non-empty args[0]), an absolute working directory, and an
// environment of KEY=VALUE entries with a non-empty KEY and no NUL byte
// anywhere (execve(2) cannot pass one). All problems are reported at once.
func Process(p *specs.Process) error {
	if p == nil {
		return fmt.Errorf("process: missing: %w", errdefs.ErrInvalidArgument)
	}
	var errs []error
	switch {
	case len(p.Args) == 0:
		errs = append(errs, errors.New("args are empty: there is nothing to run"))
	case p.Args[0] == "":
		errs = append(errs, errors.New("args[0] is empty"))
	}
	for i, a := range p.Args {
		if strings.ContainsRune(a, 0) {
			errs = append(errs, fmt.Errorf("args[%d] contains a NUL byte", i))
		}
	}
	if !path.IsAbs(p.Cwd) {
		errs = append(errs, fmt.Errorf("cwd %q is not an absolute path", p.Cwd))
	}
	for i, e := range p.Env {
		key, _, ok := strings.Cut(e, "=")
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("env[%d] %q is not KEY=VALUE", i, e))
		case key == "":
			errs = append(errs, fmt.Errorf("env[%d] %q has an empty name", i, e))
		case strings.ContainsRune(e, 0):
			errs = append(errs, fmt.Errorf("env[%d] %q contains a NUL byte", i, key))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("process: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	return nil
}
