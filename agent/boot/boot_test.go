package boot

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestFindPort(t *testing.T) {
	class := t.TempDir()
	for port, name := range map[string]string{"vport0p0": "", "vport0p1": "msb.agent\n", "vport1p1": "other\n"} {
		os.MkdirAll(filepath.Join(class, port), 0o755)
		os.WriteFile(filepath.Join(class, port, "name"), []byte(name), 0o644)
	}
	if got := findPort(class, "/dev", "msb.agent"); got != "/dev/vport0p1" {
		t.Fatalf("findPort = %q", got)
	}
	if got := findPort(class, "/dev", "missing"); got != "" {
		t.Fatalf("findPort(missing) = %q", got)
	}
}

// fakePort reads EOF a few times (no host end yet), then data.
type fakePort struct {
	eofs int
	data string
}

func (f *fakePort) Read(b []byte) (int, error) {
	if f.eofs > 0 {
		f.eofs--
		return 0, io.EOF
	}
	return copy(b, f.data), nil
}
func (f *fakePort) Write(b []byte) (int, error) { return len(b), nil }
func (f *fakePort) Close() error                { return nil }

func TestPortConnWaitsForHost(t *testing.T) {
	p := newPortConn(&fakePort{eofs: 3, data: "x"})
	start := time.Now()
	b := make([]byte, 4)
	n, err := p.Read(b)
	if err != nil || string(b[:n]) != "x" {
		t.Fatalf("Read = %q, %v", b[:n], err)
	}
	if time.Since(start) < 3*hostWait {
		t.Fatal("EOF reads were not waited out")
	}
}

func TestIsMountPoint(t *testing.T) {
	if !isMountPoint("/proc") {
		t.Fatal("/proc is a mount point")
	}
	sub := filepath.Join(t.TempDir(), "sub")
	os.Mkdir(sub, 0o755)
	if isMountPoint(sub) {
		t.Fatal("a plain directory is not a mount point")
	}
	if isMountPoint("/nonexistent/x") {
		t.Fatal("a missing path is not a mount point")
	}
}
