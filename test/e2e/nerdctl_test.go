//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nerdctl runs the nerdctl that hack/setup builds against the private
// containerd, with its data, CNI and configuration kept private.
func nerdctlCommand(ctx context.Context, args []string) *exec.Cmd {
	base := []string{
		"--address", socket, "--namespace", namespace, "--snapshotter", "erofs",
		"--data-root", filepath.Join(ctdRoot, "nerdctl"),
		"--cni-path", envOr("MSB_CNI_BIN_DIR", "/usr/lib/cni"),
		"--cni-netconfpath", envOr("MSB_CNI_CONF_DIR", filepath.Join(ctdRoot, "cni")),
	}
	cmd := exec.CommandContext(ctx, filepath.Join(os.Getenv("MSB_PREFIX"), "bin", "nerdctl"), append(base, args...)...)
	cmd.Env = append(os.Environ(), "NERDCTL_TOML=/dev/null")
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func nerdctl(t *testing.T, args ...string) result {
	t.Helper()
	return runTool(nerdctlCommand, args)
}

// nerdctlName returns a container name unique to this run, removed (with
// its task) when the test ends.
func nerdctlName(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("e2e-nerdctl-%s-%d", runToken, idSeq.Add(1))
	t.Cleanup(func() {
		if r := nerdctl(t, "rm", "-f", name); r.Code != 0 && !strings.Contains(r.Stderr, "no such container") {
			t.Errorf("cleanup: %s", r)
		}
	})
	return name
}

func TestNerdctlRun(t *testing.T) {
	r := nerdctl(t, "run", "--rm", "--runtime", runtimeName, "--net", "none", "--name", nerdctlName(t),
		busybox, "sh", "-c", "echo hi; echo oops >&2; exit 3")
	if r.Code != 3 || r.Stdout != "hi\n" || !strings.Contains(r.Stderr, "oops") {
		t.Fatalf("want hi, oops and 3: %s", r)
	}
}

func TestNerdctlTTY(t *testing.T) {
	args := []string{"run", "-it", "--rm", "--runtime", runtimeName, "--net", "none", "--name", nerdctlName(t),
		busybox, "sh", "-c", "test -t 0 && echo IS-A-TTY"}
	ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
	defer cancel()
	r := runTTY(t, ctx, nerdctlCommand(ctx, args), args)
	if r.Code != 0 || !strings.Contains(r.Stdout, "IS-A-TTY") {
		t.Fatalf("no terminal in the container: %s", r)
	}
}

// A detached container's output reaches `nerdctl logs` (through nerdctl's
// logging binary), exec runs in it, and stop ends it with SIGTERM.
func TestNerdctlDetached(t *testing.T) {
	name := nerdctlName(t)
	r := nerdctl(t, "run", "-d", "--runtime", runtimeName, "--net", "none", "--name", name, busybox,
		"sh", "-c", `echo started; trap "echo bye; exit 0" TERM; while :; do sleep 1; done`)
	if r.Code != 0 {
		t.Fatalf("run -d: %s", r)
	}
	if err := eventually(func() error {
		if l := nerdctl(t, "logs", name); !strings.Contains(l.Stdout, "started") {
			return fmt.Errorf("logs so far: %s", l)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if e := nerdctl(t, "exec", name, "sh", "-c", "echo in-exec $(hostname)"); e.Code != 0 || !strings.HasPrefix(e.Stdout, "in-exec ") {
		t.Fatalf("exec: %s", e)
	}
	// nerdctl itself exits 1 and names the process's status.
	if e := nerdctl(t, "exec", name, "sh", "-c", "exit 4"); e.Code == 0 || !strings.Contains(e.Stderr, "exit code 4") {
		t.Fatalf("exec exit 4: %s", e)
	}
	if s := nerdctl(t, "stop", name); s.Code != 0 {
		t.Fatalf("stop: %s", s)
	}
	if l := nerdctl(t, "logs", name); !strings.Contains(l.Stdout, "bye") {
		t.Fatalf("the TERM trap did not run: %s", l)
	}
	if p := nerdctl(t, "ps", "-a", "--format", "{{.Names}} {{.Status}}"); !strings.Contains(p.Stdout, name+" Exited (0)") {
		t.Fatalf("ps -a: %s", p)
	}
	if rm := nerdctl(t, "rm", name); rm.Code != 0 {
		t.Fatalf("rm: %s", rm)
	}
}

// The default bridge network gives the container an address, and -p
// publishes its port on the host's loopback (the only address this test
// talks to).
func TestNerdctlPublish(t *testing.T) {
	_, port := runPublished(t, "served-by-")
	checkHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/", port), "served-by-")
}

// runPublished runs an httpd container on the default bridge network with
// its port 80 published on a free port of the host's loopback, serving
// prefix and its hostname, and checks that eth0 has an address.
func runPublished(t *testing.T, prefix string) (name string, port int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	name = nerdctlName(t)
	r := nerdctl(t, "run", "-d", "--runtime", runtimeName, "--name", name, "-p", fmt.Sprintf("127.0.0.1:%d:80", port), busybox,
		"sh", "-c", "mkdir -p /www && echo "+prefix+"$(hostname) >/www/index.html && exec httpd -f -p 80 -h /www")
	if r.Code != 0 {
		t.Fatalf("run -d -p: %s", r)
	}
	if e := nerdctl(t, "exec", name, "ip", "-4", "-o", "addr", "show", "eth0"); e.Code != 0 || !strings.Contains(e.Stdout, "inet ") {
		t.Fatalf("no address on eth0: %s", e)
	}
	return name, port
}

// checkHTTP waits until GET url answers a body that starts with prefix.
func checkHTTP(t *testing.T, url, prefix string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	if err := eventually(func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || !strings.HasPrefix(string(body), prefix) {
			return fmt.Errorf("GET %s: %q, %v", url, body, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// --net none really has no network: loopback only.
func TestNerdctlNetNone(t *testing.T) {
	r := nerdctl(t, "run", "--rm", "--runtime", runtimeName, "--net", "none", "--name", nerdctlName(t), busybox,
		"sh", "-c", "ip -o link | grep -v ' lo:' | grep -c UP; ip -4 -o addr | grep -v ' lo ' | wc -l")
	if r.Stdout != "0\n0\n" {
		t.Fatalf("want no interface up and no address besides lo: %s", r)
	}
}
