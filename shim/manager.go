// Package shim is containerd-shim-msb-v1's process manager: the bootstrap
// protocol (start a long-running shim per sandbox and tell containerd which
// mounts it handles itself) and the cleanup of a sandbox whose shim died.
// The task API itself is in shim/task.
package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	apitypes "github.com/containerd/containerd/api/types"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	cshim "github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"

	"github.com/msb-runtime/msb/shim/journal"
	"github.com/msb-runtime/msb/shim/sandbox"
)

// RuntimeName is what users pass to --runtime.
const RuntimeName = "io.containerd.msb.v1"

// MountCapabilities is what msb handles itself: EROFS layers become
// read-only disks and the format/mkdir/mkfs transforms run in the shim or
// the guest, so containerd mounts nothing of the rootfs on the host.
func MountCapabilities() *apitypes.MountCapabilities {
	return &apitypes.MountCapabilities{
		Types:      []string{"erofs"},
		Transforms: []string{"format", "mkdir", "mkfs"},
	}
}

// groupLabels put the containers of one pod into one shim (and one VM).
var groupLabels = []string{"io.kubernetes.cri.sandbox-id"}

// Manager implements containerd's shim.Shim for msb.
type Manager struct{}

func (Manager) Name() string { return RuntimeName }

// Start launches the long-running shim for the sandbox the bundle in the
// working directory belongs to, or returns the running one's address.
func (Manager) Start(ctx context.Context, params *bootapi.BootstrapParams) (_ *bootapi.BootstrapResult, retErr error) {
	res := &bootapi.BootstrapResult{Version: 3, Protocol: "ttrpc"}
	if err := res.AddExtension(MountCapabilities()); err != nil {
		return nil, fmt.Errorf("mount capabilities: %w", err)
	}
	id := params.GetInstanceID()
	group, err := groupID(id)
	if err != nil {
		return nil, err
	}
	if err := keepOptions(params); err != nil {
		return nil, err
	}
	socketDir := params.GetSocketDir()
	if socketDir == "" {
		socketDir = filepath.Join(defaults.DefaultStateDir, "s")
	}
	addr, err := cshim.CreateSocketAddress(ctx, socketDir, params.GetContainerdGrpcAddress(), group, false)
	if err != nil {
		return nil, err
	}
	l, err := cshim.NewSocket(addr)
	if err != nil {
		if !cshim.SocketEaddrinuse(err) {
			return nil, fmt.Errorf("create shim socket: %w", err)
		}
		if cshim.CanConnect(addr) {
			// The sandbox's shim runs already: the container joins it.
			res.Address = addr
			return res, nil
		}
		if err := cshim.RemoveSocket(addr); err != nil {
			return nil, fmt.Errorf("remove stale shim socket: %w", err)
		}
		if l, err = cshim.NewSocket(addr); err != nil {
			return nil, fmt.Errorf("create shim socket: %w", err)
		}
	}
	defer func() {
		if retErr != nil {
			l.Close()
			_ = cshim.RemoveSocket(addr)
		}
	}()
	f, err := l.File()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd, err := serverCommand(ctx, id, addr, params)
	if err != nil {
		return nil, err
	}
	hostNS, err := os.Open("/proc/self/ns/mnt")
	if err != nil {
		return nil, fmt.Errorf("open the host's mount namespace: %w", err)
	}
	defer hostNS.Close()
	// fd 3: pkg/shim serves on it; fd 4: the host's mount namespace, for
	// the server's binds of host directories (shim/mountns).
	cmd.ExtraFiles = []*os.File{f, hostNS}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start shim server: %w", err)
	}
	go cmd.Wait() //nolint:errcheck // the server outlives this process
	// The server owns the socket file now: closing our copy of the
	// listener must not unlink it.
	l.SetUnlinkOnClose(false)
	l.Close()
	if err := cshim.AdjustOOMScore(cmd.Process.Pid); err != nil {
		log.G(ctx).WithError(err).Debug("shim OOM score not adjusted")
	}
	res.Address = addr
	return res, nil
}

func serverCommand(ctx context.Context, id, addr string, params *bootapi.BootstrapParams) (*exec.Cmd, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	args := []string{"-namespace", ns, "-id", id, "-address", params.GetContainerdGrpcAddress()}
	if params.GetLogLevel() <= bootapi.LogLevel_LOG_LEVEL_DEBUG {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = cwd
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2", sandbox.AddressEnv+"="+addr)
	// A mount namespace of its own: shim/mountns.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Cloneflags: syscall.CLONE_NEWNS}
	return cmd, nil
}

// groupID is the pod's sandbox id when CRI says the container belongs to
// one, else the container's own id. A sandbox started through the
// sandbox API has no config.json: it is its own group.
func groupID(id string) (string, error) {
	b, err := os.ReadFile("config.json")
	if errors.Is(err, os.ErrNotExist) {
		return id, nil
	}
	if err != nil {
		return "", fmt.Errorf("read bundle config.json: %w", err)
	}
	var s struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return "", fmt.Errorf("bundle config.json: %w", err)
	}
	for _, l := range groupLabels {
		if g := s.Annotations[l]; g != "" {
			return g, nil
		}
	}
	return id, nil
}

// keepOptions stores the runtime options of the bootstrap in the bundle
// for the sandbox API, whose CreateSandbox does not carry them (the task
// API's Create does).
func keepOptions(params *bootapi.BootstrapParams) error {
	for _, e := range params.GetExtensions() {
		v := e.GetValue()
		if !typeurl.Is(v, &runtimeoptions.Options{}) {
			continue
		}
		b, err := proto.Marshal(v)
		if err != nil {
			return err
		}
		if err := os.WriteFile(sandbox.OptionsFile, b, 0o600); err != nil {
			return fmt.Errorf("keep runtime options: %w", err)
		}
	}
	return nil
}

// Stop cleans up after a shim that is gone (containerd's "delete" action):
// it kills the sandbox's VMM if it still runs and removes what the shim
// left on the host.
func (Manager) Stop(ctx context.Context, id string) (cshim.StopStatus, error) {
	cwd, err := os.Getwd()
	if errors.Is(err, os.ErrNotExist) {
		// containerd removed the bundle already, and with it our record.
		log.G(ctx).WithField("id", id).Debug("bundle gone: nothing to clean up")
		return cshim.StopStatus{ExitedAt: time.Now(), ExitStatus: 128 + int(syscall.SIGKILL)}, nil
	}
	if err != nil {
		return cshim.StopStatus{}, err
	}
	bundle := filepath.Join(filepath.Dir(cwd), id)
	removeStaleSocket(ctx, bundle)
	killed := cshim.StopStatus{ExitedAt: time.Now(), ExitStatus: 128 + int(syscall.SIGKILL)}
	j, err := journal.Open(filepath.Join(bundle, journal.FileName))
	if errdefs.IsNotFound(err) {
		return killed, nil
	}
	if err != nil {
		return cshim.StopStatus{}, err
	}
	killed.Pid = j.VMMPid()
	// While the shim that owns the VM runs (containerd closed its
	// connection for one task only: a pod's sandbox deleted before its
	// other containers), Recover leaves everything to it.
	if err := j.Recover(ctx); err != nil {
		log.G(ctx).WithError(err).Warn("cleanup after dead shim")
	}
	return killed, nil
}

// removeStaleSocket removes the shim socket the bundle's bootstrap.json
// names when nothing listens on it any more: a killed shim cannot remove
// its own. A pod's shim that still serves other containers keeps it.
func removeStaleSocket(ctx context.Context, bundle string) {
	b, err := os.ReadFile(filepath.Join(bundle, "bootstrap.json"))
	if err != nil {
		return
	}
	var boot struct {
		Address string `json:"address"`
	}
	if json.Unmarshal(b, &boot) != nil || boot.Address == "" || cshim.CanConnect(boot.Address) {
		return
	}
	// Gone already when the shim exited cleanly: nothing to say then.
	if err := cshim.RemoveSocket(boot.Address); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.G(ctx).WithError(err).Warn("remove the dead shim's socket")
	}
}

// Info reports the runtime's name and version.
func (Manager) Info(ctx context.Context, _ io.Reader) (*apitypes.RuntimeInfo, error) {
	f, err := marshalFeatures()
	if err != nil {
		return nil, err
	}
	return &apitypes.RuntimeInfo{
		Name:     RuntimeName,
		Version:  &apitypes.RuntimeVersion{Version: Version},
		Features: f,
	}, nil
}

// Version is set at build time.
var Version = "dev"
