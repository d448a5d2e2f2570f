// vmfloor times msb's VM layer without containerd, for hack/bench.
//
//	vmfloor -mode floor   the bare VM floor: the guest kernel and floor.erofs,
//	                      whose /init only reboots (hack/tools/reboot-init.c),
//	                      started the way the vm package starts the VMM; one
//	                      line per run: "floor exit_ms=…" (exec VMM → VMM exit)
//	vmfloor -mode agent   the msb guest: boot.erofs (msb-agent) with no
//	                      container, through vm.Start and VM.Shutdown; one line
//	                      per run: "agent boot_ms=… shutdown_ms=… total_ms=…
//	                      vmm_start_ms=… kernel_boot_ms=… agent_ready_ms=…"
//	                      (vm.Start → agent answered; Shutdown → VMM reaped;
//	                      the sum; vm.Start's phases, package phase)
//	vmfloor -mode backend prints the backend vm.SelectBackend picks here
//
// Both modes use the backend vm.SelectBackend picks (qemu with TCG on a
// host without hardware virtualization, krun with it), 1 vCPU and 256 MiB
// like the shim's defaults. Interrupted (SIGINT/SIGTERM), it kills the VM it
// runs and removes its files before exiting.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/msb-runtime/msb/vm"
	"github.com/msb-runtime/msb/vm/phase"
)

func main() {
	mode := flag.String("mode", "floor", "floor, floor-confined, agent or backend")
	n := flag.Int("n", 1, "timed runs")
	warmup := flag.Int("warmup", 0, "untimed runs first")
	backend := flag.String("backend", os.Getenv("MSB_BACKEND"), "auto, qemu or krun (default: $MSB_BACKEND, else auto)")
	share := flag.String("share", vm.DefaultShare(), "guest artifacts (kernel.elf, libkrunfw.so.5, boot.erofs, floor.erofs)")
	dir := flag.String("dir", "", "scratch directory (default: a new one in $TMPDIR, removed at exit)")
	vcpus := flag.Uint("vcpus", 1, "vCPUs")
	mem := flag.Uint("mem", 256, "memory in MiB")
	flag.Usage = func() {
		fmt.Fprint(os.Stderr, `usage: vmfloor [-mode floor|agent|backend] [-n N] [-warmup W] [flags]
  floor    kernel + floor.erofs (init only reboots): "floor exit_ms=…" per run (exec VMM → VMM exit)
  floor-confined  the same, QEMU confined as the qemu backend runs it: "floor-confined exit_ms=…"
  agent    msb guest (boot.erofs), no container: "agent boot_ms=… shutdown_ms=… total_ms=…" per run
  backend  the backend vm.SelectBackend picks on this host
`)
		flag.PrintDefaults()
	}
	flag.Parse()

	opts := vm.Options{Backend: *backend, DieWithParent: true, BootTimeout: 60 * time.Second}
	b, err := vm.SelectBackend(opts, vm.DetectHostVirt())
	if err != nil {
		fatal(err)
	}
	if *mode == "backend" {
		fmt.Println(b.Name())
		return
	}
	if *mode != "floor" && *mode != "floor-confined" && *mode != "agent" {
		fatal(fmt.Errorf("unknown -mode %q (floor, floor-confined, agent or backend)", *mode))
	}

	scratch := *dir
	if scratch == "" {
		if scratch, err = os.MkdirTemp("", "vmfloor-"); err != nil {
			fatal(err)
		}
		defer os.RemoveAll(scratch)
	} else if err := os.MkdirAll(scratch, 0o700); err != nil {
		fatal(err)
	}
	interrupted.watch(scratch, *dir == "")

	spec := vm.Spec{
		VCPUs: uint32(*vcpus), MemoryMiB: uint32(*mem),
		Kernel:      vm.Kernel{ELF: filepath.Join(*share, "kernel.elf"), Krunfw: filepath.Join(*share, "libkrunfw.so.5")},
		AgentSocket: filepath.Join(scratch, "agent.sock"),
		ConsoleLog:  filepath.Join(scratch, "console.log"),
	}
	for i := -*warmup; i < *n; i++ {
		var line string
		switch *mode {
		case "floor", "floor-confined":
			spec.BootDisk = filepath.Join(*share, "floor.erofs")
			line, err = floor(b.Name(), opts, spec, scratch, *mode == "floor-confined")
		case "agent":
			spec.BootDisk = filepath.Join(*share, "boot.erofs")
			line, err = agent(opts, spec)
		}
		if err != nil {
			fatal(err)
		}
		if i >= 0 {
			fmt.Println(line)
		}
	}
}

// ---- floor -----------------------------------------------------------------

// floor boots floor.erofs and times exec → VMM exit; confined, QEMU runs
// as the qemu backend runs it (seccomp, chroot, its own uid, namespaces).
func floor(backend string, opts vm.Options, spec vm.Spec, dir string, confined bool) (string, error) {
	_ = os.Remove(spec.ConsoleLog)
	_ = os.Remove(spec.AgentSocket)
	var cmd *exec.Cmd
	switch backend {
	case "qemu (tcg)", "qemu (kvm)":
		cmd = exec.Command(qemuPath(), vm.QEMUArgs(opts, spec)...)
		if confined {
			opts.QEMU = qemuPath()
			var err error
			if cmd, err = vm.QEMUConfinedCommand(opts, spec); err != nil {
				return "", err
			}
		}
	case "krun":
		// vm.Spec is msb-vmm's input format, so krun needs no copy of
		// anything: write the spec as the krun backend does.
		spec.ErrorFile = filepath.Join(dir, "vmm-error.json")
		_ = os.Remove(spec.ErrorFile)
		path := filepath.Join(dir, "vmm.json")
		if err := writeJSON(path, &spec); err != nil {
			return "", err
		}
		cmd = exec.Command(filepath.Join(vm.DefaultPrefix, "bin", "msb-vmm"), "--spec", path, "--die-with-parent")
	default:
		return "", fmt.Errorf("floor: backend %q not known to vmfloor", backend)
	}
	logPath := filepath.Join(dir, "vmm.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return "", err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	// As the vm package does: own process group, killed with us.
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid, cmd.SysProcAttr.Pdeathsig = true, syscall.SIGKILL

	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("floor: start %s: %w", cmd.Path, err)
	}
	interrupted.set(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	werr := cmd.Wait()
	d := time.Since(t0)
	interrupted.set(nil)
	if werr != nil {
		return "", fmt.Errorf("floor: %s: %v%s", filepath.Base(cmd.Path), werr, tail("vmm.log", logPath)+tail("console", spec.ConsoleLog))
	}
	// panic=-1 turns a kernel panic into a reboot, which also ends the
	// VMM with status 0; the console (quiet otherwise) tells them apart.
	if b, _ := os.ReadFile(spec.ConsoleLog); strings.Contains(string(b), "Kernel panic") {
		return "", fmt.Errorf("floor: the guest panicked instead of rebooting%s", tail("console", spec.ConsoleLog))
	}
	name := "floor"
	if confined {
		name = "floor-confined"
	}
	return fmt.Sprintf("%s exit_ms=%.1f", name, ms(d)), nil
}

func qemuPath() string {
	if p := os.Getenv("MSB_QEMU"); p != "" {
		return p
	}
	return "/usr/bin/qemu-system-x86_64"
}

// ---- agent -----------------------------------------------------------------

// agent boots the msb guest with no container and shuts it down again.
func agent(opts vm.Options, spec vm.Spec) (string, error) {
	_ = os.Remove(spec.ConsoleLog)
	rec := phase.New("vmfloor")
	ctx := phase.With(context.Background(), rec)
	t0 := time.Now()
	v, err := vm.Start(ctx, opts, spec)
	boot := time.Since(t0)
	rec.End(err)
	if err != nil {
		return "", fmt.Errorf("agent: vm.Start: %w%s", err, tail("console", spec.ConsoleLog))
	}
	// Not v.Kill: it would wait for a Shutdown in progress.
	interrupted.set(func() { _ = syscall.Kill(-v.Pid(), syscall.SIGKILL) })
	t1 := time.Now()
	serr := v.Shutdown(ctx)
	<-v.Done() // Shutdown returns once the VMM is reaped (or killed)
	down := time.Since(t1)
	interrupted.set(nil)
	if serr != nil {
		return "", fmt.Errorf("agent: shutdown: %w", serr)
	}
	if err := syscall.Kill(v.Pid(), 0); !errors.Is(err, syscall.ESRCH) {
		return "", fmt.Errorf("agent: VMM pid %d still exists after Shutdown", v.Pid())
	}
	line := fmt.Sprintf("agent boot_ms=%.1f shutdown_ms=%.1f total_ms=%.1f", ms(boot), ms(down), ms(boot+down))
	for _, r := range rec.Records() {
		line += fmt.Sprintf(" %s_ms=%.1f", r.Name, ms(r.Duration()))
	}
	return line, nil
}

// ---- helpers ---------------------------------------------------------------

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

func tail(name, path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return ""
	}
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return fmt.Sprintf("\n--- %s (tail) ---\n%s", name, strings.TrimSpace(string(b)))
}

func fatal(err error) {
	interrupted.cleanup()
	fmt.Fprintf(os.Stderr, "vmfloor: %v\n", err)
	os.Exit(1)
}

// interrupted kills the running VM and removes the scratch directory on
// SIGINT/SIGTERM (and on fatal errors).
var interrupted stopper

type stopper struct {
	mu      sync.Mutex
	kill    func()
	dir     string
	ownsDir bool
}

func (s *stopper) watch(dir string, owns bool) {
	s.mu.Lock()
	s.dir, s.ownsDir = dir, owns
	s.mu.Unlock()
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-ch
		s.cleanup()
		fmt.Fprintf(os.Stderr, "vmfloor: %v: VM killed\n", sig)
		os.Exit(128 + int(sig.(syscall.Signal)))
	}()
}

func (s *stopper) set(kill func()) {
	s.mu.Lock()
	s.kill = kill
	s.mu.Unlock()
}

func (s *stopper) cleanup() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kill != nil {
		s.kill()
		s.kill = nil
	}
	if s.ownsDir && s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}
