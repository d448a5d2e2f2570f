package process

import (
	"encoding/json"
	"fmt"
	"io"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The agent re-executed as a process's setup stage runs as
// "msb-exec-init exec-init"; main dispatches on both words. argv[0] is what
// tells it apart from the boot: the init of a container with its own PID
// namespace is PID 1 there too, and the kernel starts /init as "/init".
const (
	InitArg   = "exec-init"
	InitArgv0 = "msb-exec-init"
)

// Enter is how a process's setup stage gets into its container's root.
type Enter string

const (
	// EnterChroot chroots into the root (a container without a mount
	// namespace: it shares the VM's).
	EnterChroot Enter = ""
	// EnterPivot pivots the root of a new mount namespace (the init's:
	// cloned with it, or unshared by msb-nsenter) to the container's root
	// and detaches the VM's mounts from it.
	EnterPivot Enter = "pivot"
	// EnterJoined: the process joined the container's mount namespace
	// (JoinNS), which put it at the container's root already.
	EnterJoined Enter = "joined"
)

// childConfig is what the setup stage reads from its config pipe.
type childConfig struct {
	// Root is the container root, as the agent sees it.
	Root    string         `json:"root"`
	Enter   Enter          `json:"enter,omitempty"`
	Process *specs.Process `json:"process"`
	// CgroupNS asks for a new cgroup namespace rooted at the process's
	// cgroup, so /proc/self/cgroup reads "0::/" as with runc.
	CgroupNS bool `json:"cgroupns,omitempty"`
	// Seccomp is the container's compiled linux.seccomp; nil installs none.
	Seccomp *seccompFilter `json:"seccomp,omitempty"`
	// NSMounts are made before the chroot (the init of a container with
	// its own PID namespace mounts its proc).
	NSMounts []NSMount `json:"nsmounts,omitempty"`
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
