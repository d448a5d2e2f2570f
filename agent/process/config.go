package process

import (
	"encoding/json"
	"fmt"
	"io"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// InitArg is argv[1] of the agent re-executed as a process's setup stage
// ("msb-agent exec-init"); main dispatches on it.
const InitArg = "exec-init"

// childConfig is what the setup stage reads from its config pipe.
type childConfig struct {
	// Root is the container root to chroot into.
	Root    string         `json:"root"`
	Process *specs.Process `json:"process"`
	// CgroupNS asks for a new cgroup namespace rooted at the process's
	// cgroup, so /proc/self/cgroup reads "0::/" as with runc.
	CgroupNS bool `json:"cgroupns,omitempty"`
	// Seccomp is the container's compiled linux.seccomp; nil installs none.
	Seccomp *seccompFilter `json:"seccomp,omitempty"`
}

// maxConfig bounds what the setup stage reads (env and args included).
const maxConfig = 16 << 20

func (c *childConfig) encode(w io.Writer) error {
	if err := json.NewEncoder(w).Encode(c); err != nil {
		return fmt.Errorf("encode process config: %w", err)
	}
	return nil
}

func decodeConfig(r io.Reader) (*childConfig, error) {
	var c childConfig
	if err := json.NewDecoder(io.LimitReader(r, maxConfig)).Decode(&c); err != nil {
		return nil, fmt.Errorf("decode process config: %w", err)
	}
	if c.Process == nil || len(c.Process.Args) == 0 {
		return nil, fmt.Errorf("process config has no args")
	}
	if c.Root == "" {
		return nil, fmt.Errorf("process config has no root")
	}
	return &c, nil
}
