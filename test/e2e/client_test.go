//go:build e2e

package e2e

import (
	"context"
	"testing"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The containerd Go client, for tests that need calls in an order ctr does
// not make (Delete at once after Wait, stdin detached without CloseIO).

// goClient connects to the test containerd; the context carries the
// suite's namespace.
func goClient(t *testing.T) (*containerd.Client, context.Context) {
	t.Helper()
	c, err := containerd.New(socket, containerd.WithDefaultNamespace(namespace))
	if err != nil {
		t.Fatalf("containerd client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, namespaces.WithNamespace(context.Background(), namespace)
}

// goContainer creates container id from busybox, for the runtime under
// test on the erofs snapshotter, with args as its process (and a terminal
// when tty is set) and opts applied to its spec. newID's cleanup removes
// it.
func goContainer(t *testing.T, c *containerd.Client, ctx context.Context, id string, tty bool, args []string, opts ...oci.SpecOpts) containerd.Container {
	t.Helper()
	img, err := c.GetImage(ctx, busybox)
	if err != nil {
		t.Fatalf("image %s: %v", busybox, err)
	}
	specOpts := []oci.SpecOpts{oci.WithImageConfig(img), oci.WithProcessArgs(args...)}
	if tty {
		specOpts = append(specOpts, oci.WithTTY)
	}
	specOpts = append(specOpts, opts...)
	cont, err := c.NewContainer(ctx, id,
		containerd.WithImage(img),
		containerd.WithSnapshotter("erofs"),
		containerd.WithNewSnapshot(id, img),
		containerd.WithRuntime(runtimeName, nil),
		containerd.WithNewSpec(specOpts...))
	if err != nil {
		t.Fatalf("create container %s: %v", id, err)
	}
	return cont
}

// execSpec is the container's process spec with args (and a terminal when
// tty is set), for an exec.
func execSpec(t *testing.T, ctx context.Context, cont containerd.Container, tty bool, args ...string) *specs.Process {
	t.Helper()
	spec, err := cont.Spec(ctx)
	if err != nil {
		t.Fatalf("spec of %s: %v", cont.ID(), err)
	}
	p := *spec.Process
	p.Args, p.Terminal = args, tty
	return &p
}
