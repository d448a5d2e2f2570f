package vm

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestQEMUArgs(t *testing.T) {
	s := validSpec()
	s.Disks[0].Path = "/s/with,comma.erofs"
	s.Shares = []Share{{Tag: "vol0", Path: "/data"}}
	s.KernelArgs = []string{"msb.debug=1"}
	q := &qemu{opts: Options{}.withDefaults()}
	args := q.args(&s, newRunFiles(&s))
	joined := strings.Join(args, " ")
	for _, want := range []string{
		"-accel tcg,tb-size=64 -cpu max",
		"-m 256M -smp 1",
		"virtserialport,chardev=agent,name=msb.agent",
		"path=/run/x/agent.sock",
		"file=/s/with,,comma.erofs",
		"id=d1,if=none,format=raw,readonly=off,file=/s/rw.img",
		"virtio-blk-device,drive=boot,serial=msb-boot",
		"vhost-user-fs-device,chardev=fs0,tag=vol0",
		"path=/run/x/fs-vol0.sock",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("args lack %q:\n%s", want, joined)
		}
	}
	// The boot disk must come before every other disk: it is /dev/vda.
	boot := slices.Index(args, "virtio-blk-device,drive=boot,serial=msb-boot")
	first := slices.Index(args, "virtio-blk-device,drive=d0,serial=layer0")
	if boot < 0 || first < 0 || boot > first {
		t.Errorf("boot disk at %d, first disk at %d", boot, first)
	}
	app := args[len(args)-1]
	if !strings.HasPrefix(app, "console=hvc0 root=/dev/vda") || !strings.HasSuffix(app, "reboot=t tsc=reliable msb.debug=1") {
		t.Errorf("kernel command line %q", app)
	}
	kvm := (&qemu{opts: q.opts, kvm: true}).args(&s, newRunFiles(&s))
	if !strings.Contains(strings.Join(kvm, " "), "-accel kvm -cpu host") {
		t.Error("kvm backend does not use KVM")
	}
	if strings.Contains(kvm[len(kvm)-1], "tsc=") {
		t.Errorf("kvm backend overrides the guest's TSC checks: %q", kvm[len(kvm)-1])
	}
}

// The balloon (free page reporting) takes a virtio-mmio transport only
// when the disks, shares and NIC leave one free.
func TestQEMUBalloon(t *testing.T) {
	q := &qemu{opts: Options{}.withDefaults()}
	s := validSpec()
	const balloon = "virtio-balloon-device,free-page-reporting=on"
	if args := q.args(&s, newRunFiles(&s)); !slices.Contains(args, balloon) {
		t.Errorf("%d devices, no balloon: %v", s.devices(), args)
	}
	for len(s.Disks) < MaxDisks {
		s.Disks = append(s.Disks, Disk{ID: "x" + string(rune('a'+len(s.Disks))), Path: "/x.img", Format: "raw"})
	}
	if args := q.args(&s, newRunFiles(&s)); slices.Contains(args, balloon) {
		t.Errorf("%d devices and a balloon: more transports than microvm has", s.devices())
	}
}

func TestReadVMMError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "e.json")
	if readVMMError(p) != nil {
		t.Fatal("missing file should mean no error")
	}
	os.WriteFile(p, []byte(`{"error":"hardware virtualization is missing"}`), 0o600)
	if err := readVMMError(p); err == nil || err.Error() != "hardware virtualization is missing" {
		t.Fatalf("got %v", err)
	}
}
