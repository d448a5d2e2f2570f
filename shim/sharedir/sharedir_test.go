package sharedir

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/internal/testns"
	"github.com/msb-runtime/msb/share"
)

// hostTree is what a host exposes around its binds: a secret next to a
// bound file, a read-only directory inside a writable one, a submount.
type hostTree struct {
	dir, secret, file, data, sub, subMount string
}

func newHostTree(t *testing.T) hostTree {
	d := t.TempDir()
	h := hostTree{dir: d, secret: filepath.Join(d, "secret"), file: filepath.Join(d, "hosts"),
		data: filepath.Join(d, "data"), sub: filepath.Join(d, "data", "sub"), subMount: filepath.Join(d, "data", "tmp")}
	for _, p := range []string{h.sub, h.subMount} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{h.secret, h.file, filepath.Join(h.sub, "f")} {
		if err := os.WriteFile(f, []byte("host"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func mustBind(t *testing.T, c *Container, e share.Export) string {
	t.Helper()
	if err := c.Bind(e); err != nil {
		t.Fatalf("bind %+v: %v", e, err)
	}
	return filepath.Join(filepath.Dir(filepath.Dir(c.Target(e))), "..", "r", filepath.Base(c.dir), e.Name)
}

func isEROFS(err error) bool { return errors.Is(err, unix.EROFS) }

// TestShareHoldsExactlyTheExports plays the guest against the served
// directory: it sees exactly the exports, a file export is the file alone,
// read-only exports (also one nested in a writable one) refuse writes on
// the host, and the share itself takes no new entries.
func TestShareHoldsExactlyTheExports(t *testing.T) {
	h := newHostTree(t)
	base := filepath.Join(t.TempDir(), "share")
	testns.InMountNS(t, func() {
		if err := unix.Mount("tmpfs", h.subMount, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		d := New(base)
		if err := d.Create(); err != nil {
			t.Fatal(err)
		}
		c := d.Container("c1")
		served := filepath.Join(d.Served(), "c1")
		mustBind(t, c, share.Export{Name: "m0", Source: h.file, ReadOnly: true})
		mustBind(t, c, share.Export{Name: "m1", Source: h.data, Dir: true, Recursive: true})
		mustBind(t, c, share.Export{Name: "m2", Source: h.sub, Dir: true, Recursive: true, ReadOnly: true})
		mustBind(t, c, share.Export{Name: "m3", Source: h.data, Dir: true})
		mustBind(t, c, share.Export{Name: "m4", Source: h.data, Dir: true, Recursive: true, ReadOnly: true, RecursiveReadOnly: true})

		ents, _ := os.ReadDir(served)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if !slices.Equal(names, []string{"m0", "m1", "m2", "m3", "m4"}) {
			t.Errorf("served entries %v, want the exports only", names)
		}
		if b, err := os.ReadFile(filepath.Join(served, "m0")); err != nil || string(b) != "host" {
			t.Errorf("file export: %q, %v", b, err)
		}
		if _, err := os.Stat(filepath.Join(served, "m0", "..", "secret")); err == nil {
			t.Errorf("the file export's sibling is reachable")
		}
		for _, p := range []string{filepath.Join(served, "m0"), filepath.Join(served, "m2", "f"), filepath.Join(served, "m4", "tmp", "x")} {
			if err := os.WriteFile(p, []byte("guest"), 0o644); !isEROFS(err) {
				t.Errorf("write %s: %v, want EROFS", p, err)
			}
		}
		if b, _ := os.ReadFile(h.file); string(b) != "host" {
			t.Errorf("the host file behind a read-only export changed: %q", b)
		}
		// The writable export is writable, its submount too; a plain
		// (non-recursive) bind of it does not carry the submount.
		if err := os.WriteFile(filepath.Join(served, "m1", "tmp", "x"), nil, 0o644); err != nil {
			t.Errorf("write in the writable export's submount: %v", err)
		}
		if _, err := os.Stat(filepath.Join(served, "m3", "tmp", "x")); err == nil {
			t.Errorf("a non-recursive export shows its source's submount")
		}
		for _, p := range []string{filepath.Join(d.Served(), "new"), filepath.Join(served, "new")} {
			if err := os.WriteFile(p, nil, 0o644); !isEROFS(err) {
				t.Errorf("create %s in the share: %v, want EROFS", p, err)
			}
		}
		if err := d.Destroy(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(base); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("share directory left: %v", err)
		}
	})
	if b, _ := os.ReadFile(h.secret); string(b) != "host" {
		t.Errorf("host secret changed: %q", b)
	}
}

// TestShareLaterExports: an export bound after the share is served (a
// pod's later container) appears below the served directory, and a copy of
// the served tree made as a slave (a file server's own namespace) sees it
// too.
func TestShareLaterExports(t *testing.T) {
	h := newHostTree(t)
	base := filepath.Join(t.TempDir(), "share")
	testns.InMountNS(t, func() {
		d := New(base)
		if err := d.Create(); err != nil {
			t.Fatal(err)
		}
		defer d.Destroy()
		slave := filepath.Join(t.TempDir(), "slave")
		if err := os.Mkdir(slave, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount(d.Served(), slave, "", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("", slave, "", unix.MS_SLAVE, ""); err != nil {
			t.Fatal(err)
		}
		defer unix.Unmount(slave, unix.MNT_DETACH)
		mustBind(t, d.Container("c2"), share.Export{Name: "m0", Source: h.file, ReadOnly: true})
		for _, p := range []string{filepath.Join(d.Served(), "c2", "m0"), filepath.Join(slave, "c2", "m0")} {
			if b, err := os.ReadFile(p); err != nil || string(b) != "host" {
				t.Errorf("%s: %q, %v", p, b, err)
			}
			if err := os.WriteFile(p, nil, 0o644); !isEROFS(err) {
				t.Errorf("write %s: %v, want EROFS", p, err)
			}
		}
	})
}

func TestBindRefusesBadExports(t *testing.T) {
	h := newHostTree(t)
	testns.InMountNS(t, func() {
		d := New(filepath.Join(t.TempDir(), "share"))
		if err := d.Create(); err != nil {
			t.Fatal(err)
		}
		defer d.Destroy()
		c := d.Container("c3")
		for _, e := range []share.Export{
			{Name: "../x", Source: h.file},
			{Name: "m0", Source: "relative"},
			{Name: "m1", Source: filepath.Join(h.dir, "missing")},
		} {
			if err := c.Bind(e); err == nil {
				t.Errorf("export %+v was bound", e)
			}
		}
		mustBind(t, c, share.Export{Name: "m2", Source: h.file})
		if err := c.Bind(share.Export{Name: "m2", Source: h.secret}); err == nil {
			t.Errorf("a second export on the same name was bound")
		}
	})
}
