package share

import (
	"testing"

	"github.com/containerd/errdefs"
)

func TestValidate(t *testing.T) {
	ok := []Export{
		{Name: "m0", Source: "/etc/hosts"},
		{Name: "l12d3", Source: "/var/lib/x/layer.erofs", ReadOnly: true},
		{Name: "root", Source: "/b/rootfs", Dir: true, Recursive: true, Own: true},
		{Name: "m7", Source: "/data", Dir: true, UIDMap: "0:1000:1", GIDMap: "0:1000:1"},
		{Name: "m0123456789abcde", Source: "/x"}, // 16 characters
	}
	for _, e := range ok {
		if err := e.Validate(); err != nil {
			t.Errorf("%+v: %v", e, err)
		}
	}
	bad := []Export{
		{Name: "", Source: "/x"},
		{Name: "../x", Source: "/x"},
		{Name: "m/0", Source: "/x"},
		{Name: "M0", Source: "/x"},
		{Name: "0m", Source: "/x"},
		{Name: "m0123456789abcdef", Source: "/x"}, // 17 characters
		{Name: "m\n", Source: "/x"},
		{Name: "m0", Source: "x"},
		{Name: "m0", Source: "/a/../x"},
		{Name: "m0", Source: "/x", Recursive: true},
		{Name: "m0", Source: "/x", Dir: true, UIDMap: "0:1:1"},
	}
	for _, e := range bad {
		if err := e.Validate(); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%+v: %v, want invalid", e, err)
		}
	}
}

func TestGuestPathAndCmdline(t *testing.T) {
	if p := GuestPath("c1", BindName(3)); p != "/run/msb/share/c1/m3" {
		t.Errorf("guest path %s", p)
	}
	for cmdline, want := range map[string]string{
		"console=hvc0 " + KernelArg + " quiet": Tag,
		"console=hvc0 quiet":                   "",
		"msb.share= x":                         "",
	} {
		if tag, _ := TagFromCmdline(cmdline); tag != want {
			t.Errorf("%q: tag %q, want %q", cmdline, tag, want)
		}
	}
	if e := (Export{RecursiveReadOnly: true}); e.Writable() {
		t.Errorf("an rro export is writable")
	}
}
