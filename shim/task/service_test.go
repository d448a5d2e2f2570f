package task

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/runtime"
	ptypes "github.com/containerd/containerd/v2/pkg/protobuf/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The task service on a fake sandbox: which sandbox calls each task call
// makes, in which order, and what every failure leaves.

// podOfSandbox and memberOf are CRI's annotations for a pod's sandbox
// container and one of its containers.
func podOfSandbox(id string) map[string]string {
	return map[string]string{annContainerType: "sandbox", annSandboxID: id}
}

func memberOf(pod string) map[string]string {
	return map[string]string{annContainerType: "container", annSandboxID: pod}
}

// create makes a bundle for container id (a busybox-like spec, its root
// a host directory) and has the service create it.
func (h *harness) create(id string, annotations map[string]string) error {
	h.t.Helper()
	bundle := filepath.Join(h.t.TempDir(), id)
	if err := os.MkdirAll(filepath.Join(bundle, "rootfs"), 0o755); err != nil {
		h.t.Fatal(err)
	}
	spec := specs.Spec{
		Version:     specs.Version,
		Process:     &specs.Process{Args: []string{"sh"}, Cwd: "/"},
		Root:        &specs.Root{Path: "rootfs"},
		Annotations: annotations,
		Linux:       &specs.Linux{},
	}
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		h.t.Fatal(err)
	}
	_, err := h.s.Create(h.ctx(), &taskAPI.CreateTaskRequest{
		ID: id, Bundle: bundle,
		Rootfs: []*types.Mount{{Type: "bind", Source: h.t.TempDir(), Options: []string{"rbind", "ro"}}},
	})
	return err
}

func (h *harness) mustCreate(id string, annotations map[string]string) {
	h.t.Helper()
	if err := h.create(id, annotations); err != nil {
		h.t.Fatalf("create %s: %v", id, err)
	}
}

func (h *harness) start(id, execID string) {
	h.t.Helper()
	if _, err := h.s.Start(h.ctx(), &taskAPI.StartRequest{ID: id, ExecID: execID}); err != nil {
		h.t.Fatalf("start %s/%s: %v", id, execID, err)
	}
}

// finish makes the init of id exit with status, waits for it and deletes
// the container.
func (h *harness) finish(id string, status uint32) {
	h.t.Helper()
	h.agent.exitIn(id, "", status)
	if st, err := h.wait(id, ""); err != nil || st != status {
		h.t.Fatalf("wait %s: %d %v", id, st, err)
	}
	r, err := h.s.Delete(h.ctx(), &taskAPI.DeleteRequest{ID: id})
	if err != nil || r.ExitStatus != status {
		h.t.Fatalf("delete %s: %v %v", id, r, err)
	}
}

func (h *harness) wantCalls(want ...string) {
	h.t.Helper()
	if got := h.sb.history(); !slices.Equal(got, want) {
		h.t.Fatalf("sandbox calls %q, want %q", got, want)
	}
}

func wantKind(t *testing.T, what string, err error, is func(error) bool) {
	t.Helper()
	if !is(errgrpc.ToNative(err)) {
		t.Fatalf("%s: %v", what, err)
	}
}

// A lone container boots the VM, and its Delete has it leave, then stops
// the VM; containerd sees create, start, exit and delete in order.
func TestLoneContainer(t *testing.T) {
	t.Parallel()
	h := newServiceHarness(t, newFakeAgent())
	h.mustCreate("c1", nil)
	if h.sb.boot.Pod || h.sb.boot.First.ID != "c1" {
		t.Fatalf("boot spec %+v", h.sb.boot)
	}
	h.start("c1", "")
	h.finish("c1", 3)
	h.wantCalls("boot c1", "leave c1", "stop")
	h.vmGone()
	h.flush()
	if got, want := h.pub.all(), []string{runtime.TaskCreateEventTopic, runtime.TaskStartEventTopic,
		runtime.TaskExitEventTopic, runtime.TaskDeleteEventTopic}; !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	if _, err := h.s.State(h.ctx(), &taskAPI.StateRequest{ID: "c1"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Fatalf("state after delete: %v", err)
	}
}

// A pod: its sandbox container boots the VM, the others join; the
// sandbox container may go first (the VM stays for the others), and the
// last container's Delete stops the VM.
func TestPodOrder(t *testing.T) {
	t.Parallel()
	h := newServiceHarness(t, newFakeAgent())
	h.mustCreate("sb", podOfSandbox("sb"))
	h.mustCreate("c2", memberOf("sb"))
	h.mustCreate("c3", memberOf("sb"))
	if !h.sb.boot.Pod {
		t.Fatal("a pod's sandbox booted a VM without a share for its members")
	}
	for _, id := range []string{"sb", "c2", "c3"} {
		h.start(id, "")
	}
	h.finish("sb", 0)
	h.wantCalls("boot sb", "join c2", "join c3", "leave sb")
	h.finish("c2", 1)
	h.finish("c3", 2)
	h.wantCalls("boot sb", "join c2", "join c3", "leave sb", "leave c2", "leave c3", "stop")
}

// A container that is not of the VM's pod cannot join it: a second lone
// container, a member of another pod, a second sandbox.
func TestJoinRefused(t *testing.T) {
	t.Parallel()
	h := newServiceHarness(t, newFakeAgent())
	h.mustCreate("sb", podOfSandbox("sb"))
	for id, ann := range map[string]map[string]string{
		"lone": nil, "other": memberOf("pod2"), "sb2": podOfSandbox("sb"),
	} {
		wantKind(t, "create "+id, h.create(id, ann), errdefs.IsFailedPrecondition)
	}
	wantKind(t, "second create of sb", h.create("sb", podOfSandbox("sb")), errdefs.IsAlreadyExists)
	h.wantCalls("boot sb")
}

// A failed boot leaves no container, and the next Create boots again.
func TestBootFails(t *testing.T) {
	t.Parallel()
	h := newServiceHarness(t, newFakeAgent())
	h.sb.failOn("boot c1", errors.New("no VM for you"))
	if err := h.create("c1", nil); err == nil {
		t.Fatal("create succeeded without a VM")
	}
	wantKind(t, "state", stateErr(h, "c1"), errdefs.IsNotFound)
	h.sb.failOn("boot c1", nil)
	h.mustCreate("c1", nil)
	h.wantCalls("boot c1", "boot c1")
}

// A failed join leaves no container and the VM running for the others.
func TestJoinFails(t *testing.T) {
	t.Parallel()
	h := newServiceHarness(t, newFakeAgent())
	h.mustCreate("sb", podOfSandbox("sb"))
	h.sb.failOn("join c2", errdefs.ErrUnavailable.WithMessage("the guest cannot"))
	wantKind(t, "create c2", h.create("c2", memberOf("sb")), errdefs.IsUnavailable)
	wantKind(t, "state c2", stateErr(h, "c2"), errdefs.IsNotFound)
	h.start("sb", "")
	h.finish("sb", 0)
	h.wantCalls("boot sb", "join c2", "leave sb", "stop")
}

// A container whose Leave fails is deleted all the same, and the VM
// stopped after it.
func TestLeaveFails(t *testing.T) {
	t.Parallel()
	h := newServiceHarness(t, newFakeAgent())
	h.mustCreate("c1", nil)
	h.sb.failOn("leave c1", errors.New("cannot undo"))
	h.start("c1", "")
	h.finish("c1", 0)
	h.wantCalls("boot c1", "leave c1", "stop")
}

// Bad requests fail before anything is booted.
func TestCreateRefusesBeforeBoot(t *testing.T) {
	t.Parallel()
	h := newServiceHarness(t, newFakeAgent())
	_, err := h.s.Create(h.ctx(), &taskAPI.CreateTaskRequest{ID: "c1", Bundle: t.TempDir(), Checkpoint: "/x"})
	// containerd would retry an Unimplemented Create on an older API.
	wantKind(t, "restore a checkpoint", err, errdefs.IsFailedPrecondition)
	_, err = h.s.Create(h.ctx(), &taskAPI.CreateTaskRequest{ID: "c1", Bundle: t.TempDir()})
	wantKind(t, "create without a config.json", err, errdefs.IsNotFound)
	h.wantCalls()
}

// An exec's life: only in a running container, with a valid id, started
// once, deleted once it exited, which has the guest forget it.
func TestExecLifecycle(t *testing.T) {
	t.Parallel()
	h := newServiceHarness(t, newFakeAgent())
	h.mustCreate("c1", nil)
	execReq := func(id string) *taskAPI.ExecProcessRequest {
		spec, _ := json.Marshal(specs.Process{Args: []string{"true"}, Cwd: "/"})
		return &taskAPI.ExecProcessRequest{ID: "c1", ExecID: id, Spec: &ptypes.Any{TypeUrl: "process", Value: spec}}
	}
	_, err := h.s.Exec(h.ctx(), execReq("e1"))
	wantKind(t, "exec before start", err, errdefs.IsFailedPrecondition)
	h.start("c1", "")
	_, err = h.s.Exec(h.ctx(), execReq("../x"))
	wantKind(t, "exec with a bad id", err, errdefs.IsInvalidArgument)
	if _, err := h.s.Exec(h.ctx(), execReq("e1")); err != nil {
		t.Fatal(err)
	}
	_, err = h.s.Exec(h.ctx(), execReq("e1"))
	wantKind(t, "second exec e1", err, errdefs.IsAlreadyExists)
	h.start("c1", "e1")
	_, err = h.s.Start(h.ctx(), &taskAPI.StartRequest{ID: "c1", ExecID: "e1"})
	wantKind(t, "second start", err, errdefs.IsFailedPrecondition)
	_, err = h.s.Delete(h.ctx(), &taskAPI.DeleteRequest{ID: "c1", ExecID: "e1"})
	wantKind(t, "delete of a running exec", err, errdefs.IsFailedPrecondition)
	h.agent.exitIn("c1", "e1", 7)
	if st, err := h.wait("c1", "e1"); err != nil || st != 7 {
		t.Fatalf("wait e1: %d %v", st, err)
	}
	if r, err := h.s.Delete(h.ctx(), &taskAPI.DeleteRequest{ID: "c1", ExecID: "e1"}); err != nil || r.ExitStatus != 7 {
		t.Fatalf("delete e1: %v %v", r, err)
	}
	h.agent.mu.Lock()
	forgotten := slices.Clone(h.agent.forgotten)
	h.agent.mu.Unlock()
	if !slices.Equal(forgotten, []string{"c1/e1"}) {
		t.Fatalf("the guest was told to forget %q", forgotten)
	}
	_, err = h.s.Delete(h.ctx(), &taskAPI.DeleteRequest{ID: "c1", ExecID: "e1"})
	wantKind(t, "second delete of e1", err, errdefs.IsNotFound)
	// A created exec is settled by the container's delete: its Wait ends.
	if _, err := h.s.Exec(h.ctx(), execReq("e2")); err != nil {
		t.Fatal(err)
	}
	_, e2, err := h.s.process("c1", "e2")
	if err != nil {
		t.Fatal(err)
	}
	h.finish("c1", 0)
	ctx, cancel := context.WithTimeout(h.ctx(), testKillGrace)
	defer cancel()
	if err := e2.wait(ctx); err != nil {
		t.Fatalf("wait for a created exec of a deleted container: %v", err)
	}
}

// Pause and resume follow the container's init; a stopped one is neither.
func TestPauseResume(t *testing.T) {
	t.Parallel()
	a := newFakeAgent()
	h := newServiceHarness(t, a)
	h.mustCreate("c1", nil)
	_, err := h.s.Resume(h.ctx(), &taskAPI.ResumeRequest{ID: "c1"})
	wantKind(t, "resume of a created container", err, errdefs.IsFailedPrecondition)
	h.start("c1", "")
	if _, err := h.s.Pause(h.ctx(), &taskAPI.PauseRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if st, _ := h.s.State(h.ctx(), &taskAPI.StateRequest{ID: "c1"}); st.GetStatus() != task.Status_PAUSED {
		t.Fatalf("state after pause: %v", st.GetStatus())
	}
	_, err = h.s.Delete(h.ctx(), &taskAPI.DeleteRequest{ID: "c1"})
	wantKind(t, "delete of a paused container", err, errdefs.IsFailedPrecondition)
	if _, err := h.s.Resume(h.ctx(), &taskAPI.ResumeRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	h.finish("c1", 0)
}

// flush waits until the events published so far reached containerd.
func (h *harness) flush() {
	done := make(chan struct{})
	h.s.events <- func() { close(done) }
	<-done
}

func stateErr(h *harness, id string) error {
	_, err := h.s.State(h.ctx(), &taskAPI.StateRequest{ID: id})
	return err
}
