package vm

import (
	"strings"
	"testing"
)

func TestCheckHostVirt(t *testing.T) {
	amd := []byte("processor\t: 0\nflags\t\t: fpu sse svm lm\n")
	none := []byte("processor\t: 0\nflags\t\t: fpu sse lm hypervisor\n")
	cases := []struct {
		name     string
		cpuinfo  []byte
		pvm, kvm bool
		hw       bool
		reason   string
	}{
		{"svm with kvm", amd, false, true, true, "svm"},
		{"no flag", none, false, true, false, "no vmx or svm"},
		{"pvm", amd, true, true, false, "kvm_pvm"},
		{"no /dev/kvm", amd, false, false, false, "/dev/kvm is missing"},
	}
	for _, c := range cases {
		got := checkHostVirt(c.cpuinfo, c.pvm, c.kvm)
		if got.Hardware != c.hw || !strings.Contains(got.Reason, c.reason) {
			t.Errorf("%s: got %+v, want hardware=%v reason~%q", c.name, got, c.hw, c.reason)
		}
	}
}

func TestSelectBackend(t *testing.T) {
	hw, soft := HostVirt{Hardware: true}, HostVirt{}
	for _, c := range []struct {
		backend string
		host    HostVirt
		want    string
	}{
		{"", hw, "krun"}, {"auto", soft, "qemu (tcg)"}, {"qemu", hw, "qemu (kvm)"}, {"krun", soft, "krun"},
	} {
		b, err := SelectBackend(Options{Backend: c.backend}, c.host)
		if err != nil || b.Name() != c.want {
			t.Errorf("%q on %+v: got %v %v, want %s", c.backend, c.host, b, err, c.want)
		}
	}
	if _, err := SelectBackend(Options{Backend: "xen"}, hw); err == nil {
		t.Error("unknown backend accepted")
	}
}
