// Package cgroup manages the cgroup v2 groups of containers: one group per
// container under a parent the agent owns (/sys/fs/cgroup/msb), which every
// process of the container joins at clone time.
package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Controllers the agent enables for containers when the kernel has them.
var Controllers = []string{"cpu", "memory", "pids", "io", "cpuset"}

// EnableControllers enables in dir's cgroup.subtree_control every wanted
// controller that dir's cgroup.controllers lists; one that cannot be enabled
// does not stop the others. It returns those enabled.
func EnableControllers(dir string, wanted []string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("read controllers of %s: %w", dir, err)
	}
	avail := map[string]bool{}
	for _, c := range strings.Fields(string(b)) {
		avail[c] = true
	}
	var enabled []string
	var errs []error
	for _, c := range wanted {
		if !avail[c] {
			continue
		}
		if err := writeFile(dir, "cgroup.subtree_control", "+"+c); err != nil {
			errs = append(errs, err)
			continue
		}
		enabled = append(enabled, c)
	}
	return enabled, errors.Join(errs...)
}

// Group is one container's cgroup.
type Group struct {
	Path string
}

// Create makes the group id under parent, creating parent (and enabling the
// controllers in it) on first use.
func Create(parent, id string) (*Group, error) {
	if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create cgroup %s: %w", parent, err)
	}
	// Best effort: a parent without controllers still groups processes.
	EnableControllers(parent, Controllers) //nolint:errcheck
	g := &Group{Path: filepath.Join(parent, id)}
	if err := os.Mkdir(g.Path, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", g.Path, err)
	}
	return g, nil
}

// Open returns a descriptor of the group's directory for clone3's
// CLONE_INTO_CGROUP; the caller closes it.
func (g *Group) Open() (*os.File, error) {
	f, err := os.OpenFile(g.Path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", g.Path, err)
	}
	return f, nil
}

// Signal sends sig to every process in the group. SIGKILL goes through
// cgroup.kill, which also catches processes forked meanwhile.
func (g *Group) Signal(sig syscall.Signal) error {
	if sig == unix.SIGKILL {
		if err := writeFile(g.Path, "cgroup.kill", "1"); err == nil {
			return nil
		}
	}
	pids, err := g.Pids()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("signal %d to pid %d of cgroup %s: %w", sig, pid, g.Path, err)
		}
	}
	return nil
}

// Populated says whether any process is left in the group or below it.
func (g *Group) Populated() (bool, error) {
	v, err := g.event("populated")
	if err != nil {
		return false, err
	}
	return v != "0", nil
}

// event reads one field of the group's cgroup.events.
func (g *Group) event(key string) (string, error) {
	b, err := os.ReadFile(filepath.Join(g.Path, "cgroup.events"))
	if err != nil {
		return "", fmt.Errorf("read %s/cgroup.events: %w", g.Path, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+" "); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no %s field in %s/cgroup.events", key, g.Path)
}

// Remove kills what is left in the group, waits up to timeout for it to
// empty and removes it.
func (g *Group) Remove(timeout time.Duration) error {
	if _, err := os.Stat(g.Path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	g.Signal(unix.SIGKILL) //nolint:errcheck // the rmdir below reports what matters
	deadline := time.Now().Add(timeout)
	for {
		err := os.Remove(g.Path)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", g.Path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func writeFile(dir, name, value string) error {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(value), 0); err != nil {
		return fmt.Errorf("write %q to %s: %w", value, p, err)
	}
	return nil
}
