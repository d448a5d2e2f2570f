package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/msb-runtime/msb/vm"
)

func optionsAny(t *testing.T, o proto.Message) *anypb.Any {
	t.Helper()
	a, err := typeurl.MarshalAnyToProto(o)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestLoadConfigDefaults(t *testing.T) {
	t.Setenv("MSB_BACKEND", "")
	c, err := LoadConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Backend != vm.BackendAuto || c.DefaultVCPUs != 1 || c.DefaultMemoryMiB != 256 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestLoadConfigBodyAndPath(t *testing.T) {
	t.Setenv("MSB_BACKEND", "")
	c, err := LoadConfig(optionsAny(t, &runtimeoptions.Options{ConfigBody: []byte("backend = 'qemu'\ndefault_memory_mib = 512\nboot_timeout = '5s'\n")}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Backend != "qemu" || c.DefaultMemoryMiB != 512 || c.DefaultVCPUs != 1 {
		t.Fatalf("from body: %+v", c)
	}
	o, err := c.vmOptions()
	if err != nil || o.BootTimeout.Seconds() != 5 {
		t.Fatalf("vm options %+v, %v", o, err)
	}

	p := filepath.Join(t.TempDir(), "msb.toml")
	if err := os.WriteFile(p, []byte("default_vcpus = 2\nshare_dir = '/x'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err = LoadConfig(optionsAny(t, &runtimeoptions.Options{ConfigPath: p}))
	if err != nil {
		t.Fatal(err)
	}
	if c.DefaultVCPUs != 2 || c.bootDisk() != "/x/boot.erofs" || c.kernel().ELF != "/x/kernel.elf" {
		t.Fatalf("from path: %+v", c)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	t.Setenv("MSB_BACKEND", "")
	for name, o := range map[string]*runtimeoptions.Options{
		"bad toml":     {ConfigBody: []byte("backend = ")},
		"missing file": {ConfigPath: "/nonexistent/msb.toml"},
		"wrong type":   {ConfigBody: []byte("default_vcpus = 'two'")},
	} {
		if _, err := LoadConfig(optionsAny(t, o)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	c, err := LoadConfig(optionsAny(t, &runtimeoptions.Options{ConfigBody: []byte("boot_timeout = 'soon'")}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.vmOptions(); err == nil || !strings.Contains(err.Error(), "boot_timeout") {
		t.Fatalf("bad boot_timeout: %v", err)
	}
}

func TestLoadConfigEnvBackend(t *testing.T) {
	t.Setenv("MSB_BACKEND", "krun")
	c, err := LoadConfig(nil)
	if err != nil || c.Backend != "krun" {
		t.Fatalf("%+v %v", c, err)
	}
}

// TestLoadConfigRuncIOOwner: CRI's user-namespace containers come with
// runc options that only name the stdio owner; other runc options are
// refused rather than ignored.
func TestLoadConfigRuncIOOwner(t *testing.T) {
	t.Setenv("MSB_BACKEND", "")
	if _, err := LoadConfig(optionsAny(t, &runcoptions.Options{IoUid: 1000, IoGid: 1000})); err != nil {
		t.Fatalf("io owner: %v", err)
	}
	// A container of a sandbox-API pod: CRI names the sandbox's task API.
	if _, err := LoadConfig(optionsAny(t, &runcoptions.Options{TaskApiAddress: "ttrpc+unix:///s", TaskApiVersion: 3})); err != nil {
		t.Fatalf("task API endpoint: %v", err)
	}
	_, err := LoadConfig(optionsAny(t, &runcoptions.Options{IoUid: 1000, BinaryName: "crun"}))
	if err == nil || !strings.Contains(err.Error(), "crun") {
		t.Fatalf("runc binary name: %v", err)
	}
}
