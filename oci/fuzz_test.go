package oci

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-runtime/msb/share"
)

// FuzzGuestSpecBinds: whatever bind mounts a spec has (sources through
// symlinks, "..", files, directories, options in any order), every export
// is exactly one bind's own source resolved on the host, never its parent
// or anything else, read-only where the bind is, and the guest spec names it
// only under the container's directory of the VM's share.
func FuzzGuestSpecBinds(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7})
	f.Add([]byte{7, 0x31, 5, 0x12, 3, 0xff})
	f.Add([]byte("rbind ro rro bind rw"))
	host := f.TempDir()
	sources := fuzzSources(f, host)
	opts := []string{"bind", "rbind", "ro", "rw", "rro", "rrw", "nosuid", "rslave", "private", "noexec"}
	f.Fuzz(func(t *testing.T, in []byte) {
		s := baseSpec()
		base := len(s.Mounts)
		for i := 0; i+1 < len(in) && len(s.Mounts) < base+16; i += 2 {
			m := specs.Mount{Destination: "/d" + string(rune('a'+len(s.Mounts))), Type: "bind", Source: sources[int(in[i])%len(sources)]}
			for b := 0; b < 8; b++ {
				if in[i+1]&(1<<b) != 0 {
					m.Options = append(m.Options, opts[(b+int(in[i]))%len(opts)])
				}
			}
			s.Mounts = append(s.Mounts, m)
		}
		g, err := GuestSpec(s, GuestOptions{ContainerID: id, Root: root})
		if err != nil {
			return // a bad source or option is refused, which is fine
		}
		checkExports(t, s, g)
	})
}

// fuzzSources makes the host paths the fuzzer picks bind sources from.
func fuzzSources(f *testing.F, host string) []string {
	for _, d := range []string{"a/b", "c"} {
		if err := os.MkdirAll(filepath.Join(host, d), 0o755); err != nil {
			f.Fatal(err)
		}
	}
	for _, file := range []string{"a/f", "secret"} {
		if err := os.WriteFile(filepath.Join(host, file), []byte("x"), 0o600); err != nil {
			f.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(host, "a", "b"), filepath.Join(host, "link")); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink("../secret", filepath.Join(host, "c", "up")); err != nil {
		f.Fatal(err)
	}
	return []string{host + "/a", host + "/a/b", host + "/a/f", host + "/c/../a/f", host + "/link",
		host + "/c/up", host + "/c", "/", host + "/missing", "rel/x", host + "/a/b/../../secret"}
}

func checkExports(t *testing.T, s *specs.Spec, g *Guest) {
	t.Helper()
	var binds []specs.Mount
	for _, m := range s.Mounts {
		if isBind(m) {
			binds = append(binds, m)
		}
	}
	if len(g.Exports) != len(binds) {
		t.Fatalf("%d exports for %d binds", len(g.Exports), len(binds))
	}
	var names []string
	for i, e := range g.Exports {
		want, err := filepath.EvalSymlinks(binds[i].Source)
		if err != nil || e.Source != want {
			t.Fatalf("export %d source %q, want the bind's own source %q (%v)", i, e.Source, want, err)
		}
		if st, err := os.Stat(want); err != nil || st.IsDir() != e.Dir {
			t.Fatalf("export %d: dir %v for %s", i, e.Dir, want)
		}
		if bindReadOnly(binds[i].Options) && e.Writable() || e.Validate() != nil || slices.Contains(names, e.Name) {
			t.Fatalf("export %d %+v for options %v", i, e, binds[i].Options)
		}
		names = append(names, e.Name)
	}
	for _, m := range g.Spec.Mounts {
		if isBind(m) && !strings.HasPrefix(m.Source, share.GuestDir+"/"+id+"/m") {
			t.Fatalf("guest bind source %s is outside the container's exports", m.Source)
		}
	}
}
