package task

import (
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
)

// Once the agent deleted the last container (its root unmounted, the
// writable layer clean), the VM is ended without a Shutdown call: nothing
// in it is left for anyone to read.
func TestTeardownAfterCleanDelete(t *testing.T) {
	a := newFakeAgent()
	h := newHarness(t, a, 0)
	h.run("c1", stdio{})
	a.exit("", 0)
	h.waitExit("c1", "")
	if _, err := h.s.Delete(h.ctx(), &taskAPI.DeleteRequest{ID: "c1"}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	h.vmGone()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.shutdowns != 0 {
		t.Errorf("%d Shutdown calls after the container's clean delete", a.shutdowns)
	}
	select {
	case <-a.deleted:
	default:
		t.Error("the container was not deleted in the guest")
	}
}
