package vm

import (
	"strings"
	"testing"
)

func validSpec() Spec {
	return Spec{
		VCPUs: 1, MemoryMiB: 256,
		Kernel:      Kernel{ELF: "/k/kernel.elf", Krunfw: "/k/libkrunfw.so.5"},
		BootDisk:    "/k/boot.erofs",
		Disks:       []Disk{{ID: "layer0", Path: "/s/l0.erofs", Format: "raw", ReadOnly: true}, {ID: "rw", Path: "/s/rw.img", Format: "raw"}},
		AgentSocket: "/run/x/agent.sock",
		ConsoleLog:  "/run/x/console.log",
	}
}

func TestSpecValidate(t *testing.T) {
	cases := []struct {
		name, want string
		edit       func(*Spec)
	}{
		{"valid", "", func(*Spec) {}},
		{"zero memory", "memory 0 MiB out of range", func(s *Spec) { s.MemoryMiB = 0 }},
		{"zero vcpus", "vcpus 0 out of range", func(s *Spec) { s.VCPUs = 0 }},
		{"relative disk", "must be absolute", func(s *Spec) { s.Disks[0].Path = "l0.erofs" }},
		{"duplicate id", "used twice", func(s *Spec) { s.Disks[1].ID = "layer0" }},
		{"boot id taken", "used twice", func(s *Spec) { s.Disks[0].ID = BootDiskID }},
		{"long serial", "is invalid", func(s *Spec) { s.Disks[0].ID = strings.Repeat("a", 21) }},
		{"bad format", "not supported", func(s *Spec) { s.Disks[0].Format = "qcow2" }},
		{"too many", "exceed the limit", func(s *Spec) {
			for i := 0; i < MaxDisks; i++ {
				s.Shares = append(s.Shares, Share{Tag: "t" + string(rune('a'+i)), Path: "/x"})
			}
		}},
		{"bad tag", "tag", func(s *Spec) { s.Shares = []Share{{Tag: "a b", Path: "/x"}} }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := validSpec()
			c.edit(&s)
			err := s.Validate()
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

func TestCheckFilesNamesMissingDisk(t *testing.T) {
	s := validSpec()
	s.BootDisk = t.TempDir() + "/nope.erofs"
	err := s.checkFiles()
	if err == nil || !strings.Contains(err.Error(), "boot disk") || !strings.Contains(err.Error(), "disk layer0") {
		t.Fatalf("error %v should name the boot disk and layer0", err)
	}
}
