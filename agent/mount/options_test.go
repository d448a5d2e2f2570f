package mount

import (
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want Options
	}{
		{"empty", nil, Options{}},
		{"erofs layer", []string{"ro", "loop"}, Options{Flags: unix.MS_RDONLY, Loop: true}},
		{"rw clears ro", []string{"ro", "rw"}, Options{}},
		{"flags", []string{"nosuid", "nodev", "noexec", "relatime", "defaults"},
			Options{Flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RELATIME}},
		{"suid clears nosuid", []string{"nosuid", "suid", "exec"}, Options{}},
		{"overlay data", []string{"workdir=/a/work", "upperdir=/a/upper", "lowerdir=/l1:/l2", "index=off"},
			Options{Data: []string{"workdir=/a/work", "upperdir=/a/upper", "lowerdir=/l1:/l2", "index=off"}}},
		{"rbind rprivate", []string{"rbind", "ro", "rprivate"},
			Options{Flags: unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY, Propagation: unix.MS_PRIVATE | unix.MS_REC}},
		{"bind", []string{"bind"}, Options{Flags: unix.MS_BIND}},
		{"recursive attributes", []string{"rbind", "rro", "rnosuid", "rexec", "rprivate"},
			Options{Flags: unix.MS_BIND | unix.MS_REC, Propagation: unix.MS_PRIVATE | unix.MS_REC,
				RecSet: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID, RecClear: unix.MOUNT_ATTR_NOEXEC}},
		{"rrw undoes rro", []string{"rbind", "rro", "rrw"}, Options{Flags: unix.MS_BIND | unix.MS_REC, RecClear: unix.MOUNT_ATTR_RDONLY}},
		{"tmpfs", []string{"nosuid", "strictatime", "mode=755", "size=65536k"},
			Options{Flags: unix.MS_NOSUID | unix.MS_STRICTATIME, Data: []string{"mode=755", "size=65536k"}}},
		{"containerd mkdir and helpers", []string{"X-containerd.mkdir.path=/m/upper:0755", "X-containerd.mkfs.fs=ext4", "x-systemd.automount", "nofail", "rw", "loop"},
			Options{Mkdirs: []string{"/m/upper:0755"}, Loop: true}},
		{"erofs devices", []string{"ro", "device=disk:l1", "device=disk:l2"},
			Options{Flags: unix.MS_RDONLY, Data: []string{"device=disk:l1", "device=disk:l2"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ParseOptions(tc.in)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseOptions(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestDataString(t *testing.T) {
	o := ParseOptions([]string{"lowerdir=/a:/b", "ro", "upperdir=/u"})
	if got := o.DataString(); got != "lowerdir=/a:/b,upperdir=/u" {
		t.Fatalf("DataString = %q", got)
	}
}
