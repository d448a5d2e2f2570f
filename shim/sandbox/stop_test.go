package sandbox

import (
	"context"
	"errors"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/internal/sockpair"
	"github.com/msb-runtime/msb/vm"
)

// stopAgent answers what Leave and Stop ask; any other call panics on the
// nil embedded interface.
type stopAgent struct {
	api.AgentService
	deleteErr error

	mu        sync.Mutex
	shutdowns int
}

func (a *stopAgent) Ping(context.Context, *api.PingRequest) (*api.PingResponse, error) {
	return &api.PingResponse{AgentVersion: "fake"}, nil
}

func (a *stopAgent) DeleteContainer(context.Context, *api.DeleteContainerRequest) (*api.Empty, error) {
	if a.deleteErr != nil {
		return nil, a.deleteErr
	}
	return &api.Empty{}, nil
}

func (a *stopAgent) Shutdown(context.Context, *api.Empty) (*api.Empty, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.shutdowns++
	return &api.Empty{}, nil
}

// attached is a VM whose VMM is a sleeping process and whose agent is
// at the other end of a socket pair, with member c1.
func attached(t *testing.T, a *stopAgent) *VM {
	host, guest := sockpair.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go api.Serve(ctx, guest, a, api.Handlers{}) //nolint:errcheck // ends with the channel
	v, err := vm.Attach(ctx, vm.Options{StopTimeout: time.Second, DieWithParent: true}, exec.Command("sleep", "infinity"), host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Kill)
	s := New()
	s.vm = v
	s.addMember("c1", nil)
	return s
}

// Once the last member left cleanly (the agent deleted it), Stop kills the
// VMM without a Shutdown call; after a delete that failed, it asks the
// agent to shut the VM down first.
func TestStopAfterLeave(t *testing.T) {
	for _, tc := range []struct {
		name      string
		deleteErr error
		shutdowns int
	}{
		{"clean", nil, 0},
		{"delete failed", errors.New("unmount: busy"), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &stopAgent{deleteErr: tc.deleteErr}
			s := attached(t, a)
			ctx := context.Background()
			if err := s.Leave(ctx, "c1"); (err != nil) != (tc.deleteErr != nil) {
				t.Fatalf("leave: %v", err)
			}
			if err := s.Stop(ctx); err != nil {
				t.Fatalf("stop: %v", err)
			}
			select {
			case <-s.Done():
			default:
				t.Fatal("the VM still runs after Stop")
			}
			a.mu.Lock()
			defer a.mu.Unlock()
			if a.shutdowns != tc.shutdowns {
				t.Errorf("%d Shutdown calls, want %d", a.shutdowns, tc.shutdowns)
			}
		})
	}
}
