package service

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/agent/process"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == process.InitArg {
		process.RunInit()
	}
	os.Exit(m.Run())
}

func TestCodes(t *testing.T) {
	for err, want := range map[error]codes.Code{
		errdefs.ErrNotFound:           codes.NotFound,
		process.ErrFinished:           codes.NotFound,
		errdefs.ErrAlreadyExists:      codes.AlreadyExists,
		errdefs.ErrFailedPrecondition: codes.FailedPrecondition,
		errdefs.ErrInvalidArgument:    codes.InvalidArgument,
		errdefs.ErrNotImplemented:     codes.Unimplemented,
		context.DeadlineExceeded:      codes.DeadlineExceeded,
		context.Canceled:              codes.Canceled,
		errors.New(`exec: "x": executable file not found in $PATH`): codes.Unknown,
	} {
		st, _ := status.FromError(toStatus(err))
		if st.Code() != want || st.Message() != err.Error() {
			t.Errorf("%v → %v %q, want %v", err, st.Code(), st.Message(), want)
		}
	}
	if toStatus(nil) != nil {
		t.Error("nil error became a status")
	}
}

// client serves a Service over an in-memory channel and returns the
// host's end.
func client(t *testing.T, cfg Config) (*api.Client, *Service) {
	t.Helper()
	guest, host := net.Pipe()
	svc := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		api.Serve(ctx, guest, svc, api.Handlers{Stdio: svc.Stdio.Put})
	}()
	c, err := api.NewClient(host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		cancel()
		<-done
	})
	return c, svc
}

func code(err error) codes.Code { return status.Code(err) }

func TestAPIErrors(t *testing.T) {
	c, _ := client(t, Config{})
	ctx := context.Background()
	pong, err := c.Ping(ctx, &api.PingRequest{})
	if err != nil || pong.AgentVersion != Version || pong.KernelRelease == "" {
		t.Fatalf("ping: %+v %v", pong, err)
	}
	if _, err := c.CreateContainer(ctx, &api.CreateContainerRequest{Id: "../x"}); code(err) != codes.InvalidArgument {
		t.Fatalf("bad id: %v", err)
	}
	if _, err := c.CreateContainer(ctx, &api.CreateContainerRequest{Id: "c1", Spec: []byte("{")}); code(err) != codes.InvalidArgument {
		t.Fatalf("bad spec: %v", err)
	}
	if _, err := c.CreateContainer(ctx, &api.CreateContainerRequest{Id: "c1", Spec: []byte("{}")}); code(err) != codes.InvalidArgument {
		t.Fatalf("empty plan: %v", err)
	}
	if _, err := c.DeleteContainer(ctx, &api.DeleteContainerRequest{Id: "nope"}); code(err) != codes.NotFound {
		t.Fatalf("delete unknown: %v", err)
	}
	req := &api.ProcessRequest{ContainerId: "nope"}
	if _, err := c.WaitProcess(ctx, req); code(err) != codes.NotFound {
		t.Fatalf("wait unknown: %v", err)
	}
	if _, err := c.CloseStdin(ctx, req); code(err) != codes.NotFound {
		t.Fatalf("close stdin unknown: %v", err)
	}
	if _, err := c.SignalProcess(ctx, &api.SignalProcessRequest{ContainerId: "nope", Signal: 9}); code(err) != codes.NotFound {
		t.Fatalf("signal unknown: %v", err)
	}
	if _, err := c.SignalProcess(ctx, &api.SignalProcessRequest{ContainerId: "nope", Signal: 0}); code(err) != codes.InvalidArgument {
		t.Fatalf("signal 0: %v", err)
	}
	cgroupCallsUnknown(t, c)
	_, err = c.StartProcess(ctx, &api.StartProcessRequest{ContainerId: "nope", Process: []byte(`{"args":["sh"],"cwd":"/"}`)})
	if code(err) != codes.NotFound {
		t.Fatalf("start in unknown: %v", err)
	}
	_, err = c.StartProcess(ctx, &api.StartProcessRequest{ContainerId: "nope", Process: []byte(`{"cwd":"/"}`)})
	if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "no args") {
		t.Fatalf("start without args: %v", err)
	}
}

// cgroupCallsUnknown: the calls on a container's cgroup answer NotFound
// for an unknown container, bad resources before that.
func cgroupCallsUnknown(t *testing.T, c *api.Client) {
	ctx := context.Background()
	req := &api.ContainerRequest{Id: "nope"}
	for name, call := range map[string]func() error{
		"pids":   func() error { _, err := c.Pids(ctx, req); return err },
		"stats":  func() error { _, err := c.Stats(ctx, req); return err },
		"pause":  func() error { _, err := c.Pause(ctx, req); return err },
		"resume": func() error { _, err := c.Resume(ctx, req); return err },
		"update": func() error {
			_, err := c.UpdateContainer(ctx, &api.UpdateContainerRequest{Id: "nope", Resources: []byte("{}")})
			return err
		},
		"wait oom": func() error { _, err := c.WaitOOM(ctx, &api.WaitOOMRequest{Id: "nope"}); return err },
	} {
		if err := call(); code(err) != codes.NotFound {
			t.Errorf("%s of an unknown container: %v", name, err)
		}
	}
	_, err := c.UpdateContainer(ctx, &api.UpdateContainerRequest{Id: "nope", Resources: []byte(`{"memory":1}`)})
	if code(err) != codes.InvalidArgument {
		t.Errorf("update with bad resources: %v", err)
	}
}
