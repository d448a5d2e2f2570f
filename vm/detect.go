package vm

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
)

// HostVirt says whether this host can run a stock guest kernel under KVM.
type HostVirt struct {
	// Hardware is true when the CPU exposes vmx or svm and /dev/kvm is not
	// PVM (which cannot boot a stock kernel).
	Hardware bool
	// Reason explains Hardware in words, for logs and errors.
	Reason string
}

// DetectHostVirt reads /proc/cpuinfo, /sys/module and /dev/kvm.
func DetectHostVirt() HostVirt {
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return HostVirt{Reason: fmt.Sprintf("cannot read /proc/cpuinfo: %v", err)}
	}
	return checkHostVirt(cpuinfo, exists("/sys/module/kvm_pvm"), exists("/dev/kvm"))
}

func checkHostVirt(cpuinfo []byte, pvm, kvm bool) HostVirt {
	flag := cpuFlag(cpuinfo)
	switch {
	case flag == "":
		return HostVirt{Reason: "hardware virtualization is missing: /proc/cpuinfo has no vmx or svm flag"}
	case pvm:
		return HostVirt{Reason: "hardware virtualization is missing: /dev/kvm is provided by kvm_pvm, which cannot boot a stock guest kernel"}
	case !kvm:
		return HostVirt{Reason: fmt.Sprintf("the CPU has %s but /dev/kvm is missing (load kvm_intel or kvm_amd)", flag)}
	}
	return HostVirt{Hardware: true, Reason: fmt.Sprintf("hardware virtualization (%s) and /dev/kvm present", flag)}
}

func cpuFlag(cpuinfo []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(name) != "flags" {
			continue
		}
		for _, f := range strings.Fields(value) {
			if f == "vmx" || f == "svm" {
				return f
			}
		}
		return ""
	}
	return ""
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
