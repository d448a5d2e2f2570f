package mount

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
)

// DiskPrefix marks a mount source (or a device= option) that names a
// virtio-blk disk by its serial.
const DiskPrefix = "disk:"

// Disks finds virtio-blk disks by serial. There is no udev in the guest, so
// the serial comes from sysfs; /dev/disk/by-id is a fallback for guests
// that have it.
type Disks struct {
	SysBlock string // /sys/block
	Dev      string // /dev
	ByID     string // /dev/disk/by-id
}

// GuestDisks are the guest's real paths.
var GuestDisks = Disks{SysBlock: "/sys/block", Dev: "/dev", ByID: "/dev/disk/by-id"}

// Find returns the device node of the disk whose serial is serial.
func (d Disks) Find(serial string) (string, error) {
	if serial == "" {
		return "", fmt.Errorf("empty disk serial: %w", errdefs.ErrInvalidArgument)
	}
	entries, err := os.ReadDir(d.SysBlock)
	if err != nil {
		return "", fmt.Errorf("find disk %q: read %s: %w", serial, d.SysBlock, err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "vd") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d.SysBlock, e.Name(), "serial"))
		if err != nil {
			continue
		}
		if strings.TrimRight(string(b), "\n\x00 ") == serial {
			return filepath.Join(d.Dev, e.Name()), nil
		}
	}
	byID := filepath.Join(d.ByID, "virtio-"+serial)
	if _, err := os.Stat(byID); err == nil {
		return byID, nil
	}
	// InvalidArgument, not NotFound: the request names a disk the VM lacks,
	// and NotFound would read as "no such container" on the host.
	return "", fmt.Errorf("no virtio-blk disk with serial %q in %s: %w", serial, d.SysBlock, errdefs.ErrInvalidArgument)
}

// Resolve turns a "disk:<serial>" source into its device node and returns
// any other source unchanged.
func (d Disks) Resolve(source string) (string, error) {
	serial, ok := strings.CutPrefix(source, DiskPrefix)
	if !ok {
		return source, nil
	}
	return d.Find(serial)
}

// ResolveData resolves "device=disk:<serial>" entries (EROFS's extra blob
// devices) in file system data options.
func (d Disks) ResolveData(data []string) ([]string, error) {
	out := make([]string, len(data))
	for i, opt := range data {
		src, ok := strings.CutPrefix(opt, "device=")
		if !ok {
			out[i] = opt
			continue
		}
		dev, err := d.Resolve(src)
		if err != nil {
			return nil, err
		}
		out[i] = "device=" + dev
	}
	return out, nil
}
