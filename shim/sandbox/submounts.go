package sandbox

import (
	"path"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-runtime/msb/share"
	"github.com/msb-runtime/msb/shim/mountns"
)

// mirrorSubmounts gives the guest the host's submounts of a directory
// export that is read-only at the top only (a bind "ro" without "rro",
// runc's non-recursive read-only bind). In the guest the share is one
// virtio-fs mount, so a read-only bind of the export would make what lies
// on the submounts read-only too; each bind from the export is followed by
// a bind of each submount below its source, with that submount's own
// read-only flag. hostCopy is where the shim bound the export.
func mirrorSubmounts(m *Member, e share.Export, hostCopy string) error {
	if !e.Dir || !e.Recursive || !e.ReadOnly || e.RecursiveReadOnly || m.Guest.Spec == nil {
		return nil
	}
	subs, err := mountns.Submounts(hostCopy)
	if err != nil || len(subs) == 0 {
		return err
	}
	m.Guest.Spec.Mounts = withSubmounts(m.Guest.Spec.Mounts, share.GuestPath(m.ID, e.Name), subs)
	return nil
}

// withSubmounts adds after each bind from the share at guestRoot a bind of
// each of subs below its source.
func withSubmounts(mounts []specs.Mount, guestRoot string, subs []mountns.Submount) []specs.Mount {
	var out []specs.Mount
	for _, m := range mounts {
		out = append(out, m)
		rel, ok := below(m.Source, guestRoot)
		if !ok || m.Type != "bind" && !strings.Contains(strings.Join(m.Options, ","), "bind") {
			continue
		}
		for _, s := range subs {
			sub, ok := s.Rel, true
			if rel != "" {
				sub, ok = below(s.Rel, rel)
			}
			if !ok || sub == "" {
				continue
			}
			mode := "rw"
			if s.ReadOnly {
				mode = "ro"
			}
			out = append(out, specs.Mount{Destination: path.Join(m.Destination, sub), Type: "bind",
				Source: path.Join(guestRoot, s.Rel), Options: []string{"rbind", mode}})
		}
	}
	return out
}

// below is p relative to dir when p is dir or lies under it.
func below(p, dir string) (string, bool) {
	if p == dir {
		return "", true
	}
	rel, ok := strings.CutPrefix(p, dir+"/")
	return rel, ok
}
