//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

// criHandlers are the runtime's handlers: msb's pause-container path and
// its sandbox API path ("msb-shim", sandboxer = 'shim').
func criHandlers() []string {
	if isMSB() {
		return []string{"msb", "msb-shim"}
	}
	return []string{"runc"}
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
// pod's address, PID namespaces, port-forward, and (msb) both containers
// in one VM; then stop and remove leave nothing behind.
func TestCRIPod(t *testing.T) {
	for _, h := range criHandlers() {
		t.Run(h, func(t *testing.T) { testCRIPod(t, h) })
	}
}

func testCRIPod(t *testing.T, handler string) {
	criImages(t)
	before := captureHostState(t)
	p := runPodWith(t, handler, "e2e-pod-", map[string]any{"hostname": "e2e-pod", "linux": map[string]any{}})
	pod := p.id
	start := func(cname string, cmd ...string) string { return p.start(t, cname, map[string]any{}, cmd...) }
	// c1 also serves HTTP on its pod's loopback only, for port-forward.
	c1 := start("c1", "sh", "-c", "echo hello-from-c1; hostname; mkdir /tmp/www; echo pf-ok >/tmp/www/index.html; "+
		"httpd -p 127.0.0.1:8080 -h /tmp/www; exec sleep 100000")
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
	// The pod shares its sandbox's PID namespace (crictl's default, CRI's
	// POD mode): PID 1 of both containers is the pause process (with the
	// sandbox API, the guest's holder of the pod's namespace, msb-agent).
	pid1 := func(id string) string { return mustCrictl(t, "exec", id, "cat", "/proc/1/cmdline") }
	if p1, p2 := pid1(c1), pid1(c2); p1 != p2 || !(strings.Contains(p1, "pause") || strings.Contains(p1, "2147483647") ||
		handler == "msb-shim" && strings.HasPrefix(p1, "/init")) {
		t.Fatalf("PID 1 of c1 %q and of c2 %q should both be the pod's pause process", p1, p2)
	}
	checkPortForward(t, pod, 8080, "pf-ok\n")
	// CRI's update sets a memory limit (and a swap limit with it).
	mustCrictl(t, "update", "--memory", "100000000", c2)
	if isMSB() {
		if out := mustCrictl(t, "exec", c2, "cat", "/sys/fs/cgroup/memory.max"); out != "99999744" {
			t.Fatalf("memory.max after update: %q", out)
		}
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

// criPod is a pod made through CRI, removed when the test ends.
type criPod struct {
	id, dir, cfg string
}

// runPod makes a pod named prefix+runToken with the given fields added to
// its config.
func runPod(t *testing.T, prefix string, fields map[string]any) criPod {
	t.Helper()
	return runPodWith(t, criHandler(), prefix, fields)
}

// runPodWith is runPod with the runtime handler handler.
func runPodWith(t *testing.T, handler, prefix string, fields map[string]any) criPod {
	t.Helper()
	p := criPod{dir: t.TempDir()}
	name := prefix + runToken
	cfg := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "e2e", "uid": name, "attempt": 0},
		"log_directory": p.dir,
	}
	for k, v := range fields {
		cfg[k] = v
	}
	p.cfg = writeJSON(t, p.dir, "pod.json", cfg)
	p.id = mustCrictl(t, "runp", "--runtime", handler, p.cfg)
	t.Cleanup(func() {
		crictl(t, "stopp", p.id)
		crictl(t, "rmp", p.id)
	})
	return p
}

// start creates and starts a busybox container cname in the pod, with
// linux as its config's "linux" section.
func (p criPod) start(t *testing.T, cname string, linux map[string]any, cmd ...string) string {
	t.Helper()
	cfg := writeJSON(t, p.dir, cname+".json", map[string]any{
		"metadata": map[string]any{"name": cname},
		"image":    map[string]any{"image": busybox},
		"command":  cmd,
		"log_path": cname + ".log",
		"linux":    linux,
	})
	id := mustCrictl(t, "create", p.id, cfg, p.cfg)
	mustCrictl(t, "start", id)
	return id
}

// checkPortForward has crictl forward a local port to port in the pod, and
// fetches want from the server there over HTTP.
func checkPortForward(t *testing.T, pod string, port int, want string) {
	t.Helper()
	lis, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	local := lis.Addr().(*net.TCPAddr).Port
	lis.Close()
	ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
	defer cancel()
	cmd := crictlCommand(ctx, []string{"port-forward", pod, fmt.Sprintf("%d:%d", local, port)})
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }() //nolint:errcheck // killed on purpose
	client := &http.Client{Timeout: 10 * time.Second}
	err = eventually(func() error {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", local))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || string(b) != want {
			return fmt.Errorf("got %q, %v; want %q", b, err, want)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("port-forward %d:%d: %v; crictl said: %s", local, port, err, out.String())
	}
}

// TestCRISandboxExitsFirst: the pod's pause process dies while a container
// of the pod runs (PID namespaces per container, so it survives). CRI then
// deletes the sandbox's task, and containerd its bundle, before the
// container's; the container keeps working, and removing the pod leaves
// nothing behind.
func TestCRISandboxExitsFirst(t *testing.T) {
	criImages(t)
	before := captureHostState(t)
	own := map[string]any{"security_context": map[string]any{
		"namespace_options": map[string]any{"pid": 1}}} // CONTAINER
	p := runPod(t, "e2e-sbexit-", map[string]any{"linux": own})
	pod := p.id
	c1 := p.start(t, "c1", own, "sleep", "100000")

	ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, ctrBin, "--address", socket, "--namespace", criNamespace,
		"task", "kill", "--signal", "SIGKILL", pod).CombinedOutput(); err != nil {
		t.Fatalf("kill the pod's pause process: %v\n%s", err, out)
	}
	// CRI marks the pod not ready once it has deleted the sandbox's task.
	if err := eventually(func() error {
		if out := mustCrictl(t, "inspectp", "-o", "go-template", "--template", "{{.status.state}}", pod); out != "SANDBOX_NOTREADY" {
			return fmt.Errorf("pod state %s", out)
		}
		out, _ := exec.CommandContext(ctx, ctrBin, "--address", socket, "--namespace", criNamespace, "task", "ls").CombinedOutput()
		if strings.Contains(string(out), pod) {
			return fmt.Errorf("the sandbox's task is still there:\n%s", out)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if e := crictl(t, "exec", c1, "echo", "still-here"); e.Stdout != "still-here\n" {
		t.Fatalf("exec in the container after its sandbox exited: %s", e)
	}
	mustCrictl(t, "rm", "-f", c1)
	mustCrictl(t, "stopp", pod)
	mustCrictl(t, "rmp", pod)
	checkNoLeaks(t, before)
}

// TestCRIUserNamespace: a pod with a user namespace (CRI's POD mode with a
// mapping, as the kubelet sends for hostUsers: false). Its containers see
// the mapping, run as the namespace's root, see the image's and CRI's
// files (/etc/hostname is an idmapped bind) as root's, and may write to
// their root; an exec joins the same namespace.
func TestCRIUserNamespace(t *testing.T) {
	criImages(t)
	before := captureHostState(t)
	idmap := []map[string]any{{"container_id": 0, "host_id": 100000, "length": 65536}}
	userns := map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{
		"userns_options": map[string]any{"mode": 0, "uids": idmap, "gids": idmap}}}} // POD
	p := runPod(t, "e2e-userns-", map[string]any{"hostname": "e2e-userns", "linux": userns})
	// It serves HTTP on port 80: a user namespace's root binds it (CRI
	// lets any user of the pod bind the low ports).
	c1 := p.start(t, "c1", userns, "sh", "-c", "cat /proc/self/uid_map; id -u; mkdir /tmp/www; "+
		"echo userns-http >/tmp/www/index.html; httpd -p 80 -h /tmp/www; exec sleep 100000")
	if err := eventually(func() error {
		l := crictl(t, "logs", c1)
		if f := strings.Fields(l.Stdout); len(f) != 4 || f[0] != "0" || f[1] != "100000" || f[2] != "65536" || f[3] != "0" {
			return fmt.Errorf("init's uid_map and uid: %s", l)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	script := `cat /proc/self/uid_map; id -u; stat -c '%u:%g' / /bin/busybox /etc/hostname; cat /etc/hostname;
touch /made-by-root && stat -c '%u:%g' /made-by-root`
	e := crictl(t, "exec", c1, "sh", "-c", script)
	want := []string{"0", "100000", "65536", "0", "0:0", "0:0", "0:0", "e2e-userns", "0:0"}
	if got := strings.Fields(e.Stdout); !slices.Equal(got, want) {
		t.Fatalf("exec in the user namespace: got %q, want %q\n%s", got, want, e)
	}
	checkPortForward(t, p.id, 80, "userns-http\n")
	mustCrictl(t, "stop", c1)
	mustCrictl(t, "rm", c1)
	mustCrictl(t, "stopp", p.id)
	mustCrictl(t, "rmp", p.id)
	checkNoLeaks(t, before)
}
