package shim

import (
	"fmt"

	// Registers the runtime-spec features type with typeurl, as containerd
	// does on its side.
	_ "github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/msb-runtime/msb/oci"
)

// Features is what msb honours, in the runtime-spec features format that
// "runc features" prints. containerd's CRI reads it from the shim's -info
// to learn that recursive read-only mounts ("rro") work, and that user
// namespaces do ("user" with idmapped mounts: the agent idmaps the root's
// layers, the shim a bind's share).
func Features() *features.Features {
	enabled := true
	return &features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		// Run on the host with the VMM's pid; hooks inside the container
		// are refused (docs/design.md).
		Hooks:        []string{"prestart", "createRuntime", "poststart", "poststop"},
		MountOptions: oci.BindOptions(),
		Linux: &features.Linux{
			// New ones: "pid", "cgroup" and "user" in the guest, "network"
			// the VM's (joined by the VMM on the host).
			Namespaces: []string{"cgroup", "network", "pid", "user"},
			Cgroup:     &features.Cgroup{V2: &enabled},
			Seccomp:    &features.Seccomp{Enabled: &enabled},
			MountExtensions: &features.MountExtensions{
				IDMap: &features.IDMap{Enabled: &enabled},
			},
		},
	}
}

func marshalFeatures() (*anypb.Any, error) {
	a, err := typeurl.MarshalAnyToProto(Features())
	if err != nil {
		return nil, fmt.Errorf("marshal runtime features: %w", err)
	}
	return a, nil
}
