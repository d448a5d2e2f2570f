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
	if slices.Contains(f.Linux.Namespaces, "user") {
		t.Fatal("features claim user namespaces")
	}
}
