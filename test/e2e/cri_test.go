//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CRI runs in containerd's k8s.io namespace, with the runtime handler
// named like the runtime (hack/containerd/config.toml.in).
const criNamespace = "k8s.io"

func criHandler() string {
	if isMSB() {
		return "msb"
	}
	return "runc"
}

func crictlCommand(ctx context.Context, args []string) *exec.Cmd {
	bin := filepath.Join(os.Getenv("MSB_PREFIX"), "bin", "crictl")
	ep := "unix://" + socket
	cmd := exec.CommandContext(ctx, bin, append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func crictl(t *testing.T, args ...string) result {
	t.Helper()
	return runTool(crictlCommand, args)
}

func mustCrictl(t *testing.T, args ...string) string {
	t.Helper()
	r := crictl(t, args...)
	if r.Code != 0 {
		t.Fatalf("%s", r)
	}
	return strings.TrimSpace(r.Stdout)
}

// criImages puts busybox and a pause image (busybox sleeping) into
// CRI's namespace: no registry is reachable here.
func criImages(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	layer := filepath.Join(dir, "l.tar")
	if err := writeLayer(layer, 0); err != nil {
		t.Fatal(err)
	}
	pause := filepath.Join(dir, "pause.tar")
	mkoci := filepath.Join(envOr("MSB_CACHE", "/opt/msb/cache"), "bin", "mkoci")
	if b, err := exec.Command(mkoci, "-o", pause, "-name", "registry.k8s.io/pause:3.10.2",
		"-entrypoint", "/bin/sleep", "-entrypoint", "2147483647", layer).CombinedOutput(); err != nil {
		t.Fatalf("mkoci: %v\n%s", err, b)
	}
	tars := []string{filepath.Join(envOr("MSB_CACHE", "/opt/msb/cache"), "images", "busybox.tar")}
	// hack/critest's real pause image, when it is there, stays.
	if crictl(t, "inspecti", "registry.k8s.io/pause:3.10.2").Code != 0 {
		tars = append(tars, pause)
	}
	for _, tar := range tars {
		ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
		out, err := exec.CommandContext(ctx, ctrBin, "--address", socket, "--namespace", criNamespace,
			"images", "import", tar).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("import %s: %v\n%s", tar, err, out)
		}
	}
}

func writeJSON(t *testing.T, dir, name string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCRIPod runs a pod of two containers through CRI: logs, exec, the
// pod's address, and (msb) both containers in one VM; then stop and
// remove leave nothing behind.
func TestCRIPod(t *testing.T) {
	criImages(t)
	before := captureHostState(t)
	dir := t.TempDir()
	name := "e2e-pod-" + runToken
	podCfg := writeJSON(t, dir, "pod.json", map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "e2e", "uid": name, "attempt": 0},
		"hostname":      "e2e-pod",
		"log_directory": dir,
		"linux":         map[string]any{},
	})
	pod := mustCrictl(t, "runp", "--runtime", criHandler(), podCfg)
	t.Cleanup(func() {
		crictl(t, "stopp", pod)
		crictl(t, "rmp", pod)
	})
	start := func(cname string, cmd ...string) string {
		cfg := writeJSON(t, dir, cname+".json", map[string]any{
			"metadata": map[string]any{"name": cname},
			"image":    map[string]any{"image": busybox},
			"command":  cmd,
			"log_path": cname + ".log",
			"linux":    map[string]any{},
		})
		id := mustCrictl(t, "create", pod, cfg, podCfg)
		mustCrictl(t, "start", id)
		return id
	}
	c1 := start("c1", "sh", "-c", "echo hello-from-c1; hostname; exec sleep 100000")
	c2 := start("c2", "sleep", "100000")
	if err := eventually(func() error {
		if l := crictl(t, "logs", c1); !strings.Contains(l.Stdout, "hello-from-c1\ne2e-pod") {
			return fmt.Errorf("logs: %s", l)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// crictl exits 1 and names the process's status.
	if e := crictl(t, "exec", c2, "sh", "-c", "echo exec-ok; exit 3"); e.Stdout != "exec-ok\n" || !strings.Contains(e.Stderr, "exit code 3") {
		t.Fatalf("exec: %s", e)
	}
	// The pod's address (from CNI, in the pod's network namespace) is
	// the containers' own.
	var st struct {
		Status struct {
			Network struct{ IP string }
		}
	}
	if err := json.Unmarshal([]byte(mustCrictl(t, "inspectp", pod)), &st); err != nil || st.Status.Network.IP == "" {
		t.Fatalf("pod IP: %+v %v", st, err)
	}
	if e := crictl(t, "exec", c1, "ip", "-4", "-o", "addr"); !strings.Contains(e.Stdout, " "+st.Status.Network.IP+"/") {
		t.Fatalf("container lacks the pod IP %s: %s", st.Status.Network.IP, e)
	}
	if isMSB() {
		var shims []int
		for _, p := range procs() {
			if p.exe == shimName() && strings.Contains(p.cmdline, " -namespace "+criNamespace+" ") {
				shims = append(shims, p.pid)
			}
		}
		if len(shims) != 1 || len(vmms(procs(), shims[0])) != 1 {
			t.Fatalf("a pod must be one shim with one VM: shims %v", shims)
		}
	}
	mustCrictl(t, "stop", c1, c2)
	mustCrictl(t, "rm", c1, c2)
	mustCrictl(t, "stopp", pod)
	mustCrictl(t, "rmp", pod)
	checkNoLeaks(t, before)
}
