package process

import (
	"fmt"
	"strings"
	"syscall"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var rlimitByName = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

// setRlimits uses syscall.Setrlimit, not x/sys: only it tells the Go runtime
// not to restore its own RLIMIT_NOFILE at execve.
func setRlimits(limits []specs.POSIXRlimit) error {
	for _, l := range limits {
		res, ok := rlimitByName[l.Type]
		if !ok {
			return fmt.Errorf("unknown rlimit %q", l.Type)
		}
		if err := syscall.Setrlimit(res, &syscall.Rlimit{Cur: l.Soft, Max: l.Hard}); err != nil {
			return fmt.Errorf("set %s to soft %d hard %d: %w", l.Type, l.Soft, l.Hard, err)
		}
	}
	return nil
}

// capsFromSpec builds the capability sets of the spec; nil when the spec
// has none, which leaves the process with the agent's (as runc does).
// Names the kernel does not know are ignored, as runc does.
func capsFromSpec(c *specs.LinuxCapabilities) (capability.Capabilities, error) {
	if c == nil {
		return nil, nil
	}
	caps, err := capability.NewPid2(0)
	if err != nil {
		return nil, fmt.Errorf("capabilities: %w", err)
	}
	caps.Clear(capability.CAPS | capability.BOUNDS | capability.AMBS)
	known, err := knownCaps()
	if err != nil {
		return nil, err
	}
	sets := []struct {
		which capability.CapType
		names []string
	}{
		{capability.BOUNDING, c.Bounding}, {capability.EFFECTIVE, c.Effective},
		{capability.PERMITTED, c.Permitted}, {capability.INHERITABLE, c.Inheritable},
		{capability.AMBIENT, c.Ambient},
	}
	for _, s := range sets {
		for _, name := range s.names {
			if cp, ok := known[name]; ok {
				caps.Set(s.which, cp)
			}
		}
	}
	return caps, nil
}

// knownCaps maps "CAP_SYS_ADMIN"-style names to the capabilities this
// kernel supports.
func knownCaps() (map[string]capability.Cap, error) {
	list, err := capability.ListSupported()
	if err != nil {
		return nil, fmt.Errorf("list supported capabilities: %w", err)
	}
	m := make(map[string]capability.Cap, len(list))
	for _, c := range list {
		m["CAP_"+strings.ToUpper(c.String())] = c
	}
	return m, nil
}

// applyBounding drops from the bounding set; it needs CAP_SETPCAP, so it
// runs before the user switch.
func applyBounding(caps capability.Capabilities) error {
	if caps == nil {
		return nil
	}
	if err := caps.Apply(capability.BOUNDS); err != nil {
		return fmt.Errorf("apply bounding capabilities: %w", err)
	}
	return nil
}

// applyCaps sets the effective, permitted, inheritable and ambient sets.
func applyCaps(caps capability.Capabilities) error {
	if caps == nil {
		return nil
	}
	if err := caps.Apply(capability.CAPS); err != nil {
		return fmt.Errorf("apply capabilities: %w", err)
	}
	if err := caps.Apply(capability.AMBS); err != nil {
		return fmt.Errorf("apply ambient capabilities: %w", err)
	}
	return nil
}
