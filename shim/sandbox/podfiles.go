package sandbox

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/share"
	"github.com/msb-runtime/msb/shim/journal"
)

// PodFiles are what containerd's pause path keeps on the host for a CRI
// pod and binds into each of its containers: /etc/hostname, /etc/hosts,
// /etc/resolv.conf and the pod's /dev/shm. With the sandbox API there is no
// pause container, so the shim makes them itself, in the VM's run
// directory, and the VM's share exports them under the pod's id.
type PodFiles struct {
	// ID is the pod sandbox's: the exports' directory in the share.
	ID                          string
	Hostname, Hosts, ResolvConf string
	// ShmSize is the size of the pod's /dev/shm, a tmpfs.
	ShmSize int64
}

// The pod files' export names.
const (
	PodHostname   = "hostname"
	PodHosts      = "hosts"
	PodResolvConf = "resolvconf"
	PodShm        = "shm"
)

// GuestPath is where the guest finds pod file name of pod id.
func GuestPath(id, name string) string { return share.GuestPath(id, name) }

// podFilesSize bounds the tmpfs holding the pod's /etc files: the guest
// may write them (as a runc container writes containerd's copies), but
// not fill the host's /run through them.
const podFilesSize = 1 << 20

// writePodFiles makes the pod files in a small tmpfs in the run directory
// and the pod's /dev/shm, each tmpfs recorded before it is mounted, and
// returns their exports.
func (s *VM) writePodFiles(f *PodFiles) ([]share.Export, error) {
	dir := filepath.Join(s.runDir, "pod")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pod files: %w", err)
	}
	if err := s.journal.Record(journal.Mount(dir)); err != nil {
		return nil, err
	}
	if err := unix.Mount("msb-pod", dir, "tmpfs", unix.MS_NOEXEC|unix.MS_NOSUID|unix.MS_NODEV,
		fmt.Sprintf("mode=0755,size=%d,nr_inodes=64", podFilesSize)); err != nil {
		return nil, fmt.Errorf("pod files: %w", err)
	}
	var exps []share.Export
	for _, file := range []struct{ name, content string }{
		{PodHostname, f.Hostname}, {PodHosts, f.Hosts}, {PodResolvConf, f.ResolvConf},
	} {
		p := filepath.Join(dir, file.name)
		if err := os.WriteFile(p, []byte(file.content), 0o644); err != nil {
			return nil, fmt.Errorf("pod files: %w", err)
		}
		exps = append(exps, share.Export{Name: file.name, Source: p, Own: true})
	}
	shm := filepath.Join(dir, PodShm)
	if err := os.Mkdir(shm, 0o1777); err != nil {
		return nil, fmt.Errorf("pod files: %w", err)
	}
	if err := s.journal.Record(journal.Mount(shm)); err != nil {
		return nil, err
	}
	opts := fmt.Sprintf("mode=1777,size=%d", f.ShmSize)
	if err := unix.Mount("shm", shm, "tmpfs", unix.MS_NOEXEC|unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return nil, fmt.Errorf("pod /dev/shm: %w", err)
	}
	return append(exps, share.Export{Name: PodShm, Source: shm, Dir: true, Own: true}), nil
}
