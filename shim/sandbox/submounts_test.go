package sandbox

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-runtime/msb/shim/mountns"
)

// TestWithSubmounts: a read-only bind from an export whose host tree has
// submounts is followed by binds of those below its source, with their own
// flags; other mounts are left alone.
func TestWithSubmounts(t *testing.T) {
	root := "/run/msb/share/c1/m1"
	mounts := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/mnt", Type: "bind", Source: root, Options: []string{"rbind", "ro"}},
		{Destination: "/sub", Type: "bind", Source: root + "/a", Options: []string{"rbind", "ro"}},
		{Destination: "/other", Type: "bind", Source: "/run/msb/share/c1/m2", Options: []string{"rbind", "ro"}},
	}
	subs := []mountns.Submount{{Rel: "tmpfs"}, {Rel: "a/b", ReadOnly: true}}
	got := withSubmounts(mounts, root, subs)
	want := []specs.Mount{
		mounts[0],
		mounts[1],
		{Destination: "/mnt/tmpfs", Type: "bind", Source: root + "/tmpfs", Options: []string{"rbind", "rw"}},
		{Destination: "/mnt/a/b", Type: "bind", Source: root + "/a/b", Options: []string{"rbind", "ro"}},
		mounts[2],
		{Destination: "/sub/b", Type: "bind", Source: root + "/a/b", Options: []string{"rbind", "ro"}},
		mounts[3],
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}
