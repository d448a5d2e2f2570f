package shim

import (
	"context"
	"slices"
	"testing"

	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// TestInfoFeatures: containerd's CRI decodes the features from -info and
// enables recursive read-only mounts when "rro" is among the mount
// options, user namespaces only with "user" and idmap mounts.
func TestInfoFeatures(t *testing.T) {
	info, err := Manager{}.Info(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := typeurl.UnmarshalAny(info.Features)
	if err != nil {
		t.Fatalf("decode features: %v", err)
	}
	f, ok := v.(*features.Features)
	if !ok {
		t.Fatalf("features are %T", v)
	}
	if !slices.Contains(f.MountOptions, "rro") || !slices.Contains(f.Linux.Namespaces, "pid") {
		t.Fatalf("features lack rro or pid: %+v", f)
	}
	// CRI reports user-namespace support for a handler with both.
	if !slices.Contains(f.Linux.Namespaces, "user") || f.Linux.MountExtensions == nil || f.Linux.MountExtensions.IDMap == nil ||
		f.Linux.MountExtensions.IDMap.Enabled == nil || !*f.Linux.MountExtensions.IDMap.Enabled {
		t.Fatalf("features lack user namespaces with idmapped mounts: %+v", f.Linux)
	}
}
