package boot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/api"
)

const portTimeout = 5 * time.Second

var errChannelClosed = errors.New("agent channel closed")

// Where virtio-console ports show up.
var (
	portClass = "/sys/class/virtio-ports"
	devDir    = "/dev"
)

// findPort returns the device of the virtio-console port named name, e.g.
// /dev/vport0p1, or "" when it is not there (yet).
func findPort(class, dev, name string) string {
	names, _ := filepath.Glob(filepath.Join(class, "vport*", "name"))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil || strings.TrimSpace(string(b)) != name {
			continue
		}
		return filepath.Join(dev, filepath.Base(filepath.Dir(n)))
	}
	return ""
}

// openPort waits up to timeout for the agent port and its device node.
func openPort(ctx context.Context, timeout time.Duration) (*os.File, error) {
	deadline := time.Now().Add(timeout)
	for {
		if p := findPort(portClass, devDir, api.PortName); p != "" {
			f, err := os.OpenFile(p, os.O_RDWR|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
			if err == nil {
				return f, nil
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("boot: open agent port %s: %w", p, err)
			}
		} else if time.Now().After(deadline) {
			return nil, fmt.Errorf("boot: no virtio-console port named %q in %s after %v", api.PortName, portClass, timeout)
		}
		log.G(ctx).Debug("waiting for the agent port")
		time.Sleep(20 * time.Millisecond)
	}
}

// portConn is the agent port as the channel's connection. A
// virtio-console port reads 0 bytes (EOF) while no host end is connected,
// which is normal before the host connects: those reads are retried
// instead of ending the channel.
type portConn struct {
	f io.ReadWriteCloser
}

func newPortConn(f io.ReadWriteCloser) *portConn { return &portConn{f: f} }

// hostWait is how often a port without a host end is polled; poll(2)
// reports HUP at once then, so it cannot wait for the connection.
const hostWait = 20 * time.Millisecond

func (p *portConn) Read(b []byte) (int, error) {
	for {
		n, err := p.f.Read(b)
		if n > 0 || (err != nil && !errors.Is(err, io.EOF)) {
			return n, err
		}
		time.Sleep(hostWait)
	}
}

func (p *portConn) Write(b []byte) (int, error) { return p.f.Write(b) }

func (p *portConn) Close() error { return p.f.Close() }
