package rootfs

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
)

// The transforms containerd's mount manager knows (core/mount/manager) and
// the shim claims; a mount type "format/mkdir/overlay" applies them outside
// in: format, then mkdir, on an overlay.
const (
	transformFormat = "format"
	transformMkdir  = "mkdir"
	transformMkfs   = "mkfs"
)

const (
	optMkdirPath = "X-containerd.mkdir.path="
	optMkfs      = "X-containerd.mkfs."
	optDmverity  = "X-containerd.dmverity="
	templateMark = "{{"
)

// supportedHint is appended to errors about shapes msb does not serve.
const supportedHint = "msb serves the EROFS snapshotter in block mode " +
	"(default_size set in [plugins.'io.containerd.snapshotter.v1.erofs']) and " +
	"snapshotters that hand out a host overlay or bind mount (overlayfs, native)"

// blockModeHint is the fix for the EROFS snapshotter's default mode.
const blockModeHint = "the EROFS snapshotter must run in block mode: set default_size " +
	"(e.g. '1GiB') in [plugins.'io.containerd.snapshotter.v1.erofs']"

// mnt is one containerd mount split into its transforms and base type.
type mnt struct {
	index      int
	typ        string   // erofs, ext4, overlay, bind
	transforms []string // outermost first
	source     string
	options    []string
}

func (m *mnt) has(transform string) bool { return slices.Contains(m.transforms, transform) }

func (m *mnt) String() string {
	t := m.typ
	if len(m.transforms) > 0 {
		t = strings.Join(m.transforms, "/") + "/" + m.typ
	}
	return fmt.Sprintf("rootfs mount %d (%s %s)", m.index, t, m.source)
}

func (m *mnt) errorf(kind error, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", m, fmt.Sprintf(format, args...), kind)
}

func parseMounts(mounts []*types.Mount) ([]*mnt, error) {
	ms := make([]*mnt, 0, len(mounts))
	for i, raw := range mounts {
		if raw == nil {
			return nil, fmt.Errorf("rootfs mount %d is nil: %w", i, errdefs.ErrInvalidArgument)
		}
		m := &mnt{index: i, source: raw.Source, options: slices.Clone(raw.Options)}
		parts := strings.Split(raw.Type, "/")
		m.typ = parts[len(parts)-1]
		for _, t := range parts[:len(parts)-1] {
			switch t {
			case transformFormat, transformMkdir, transformMkfs:
				m.transforms = append(m.transforms, t)
			default:
				return nil, m.errorf(errdefs.ErrNotImplemented, "unknown mount transform %q (msb knows format, mkdir, mkfs)", t)
			}
		}
		switch m.typ {
		case "erofs", "ext4", "overlay", "bind", "rbind":
		case "":
			return nil, m.errorf(errdefs.ErrInvalidArgument, "no mount type")
		default:
			return nil, m.errorf(errdefs.ErrNotImplemented, "mount type %q is not supported; %s", m.typ, supportedHint)
		}
		if m.typ == "rbind" {
			m.typ = "bind"
			m.options = append(m.options, "rbind")
		}
		if raw.Target != "" {
			return nil, m.errorf(errdefs.ErrNotImplemented, "mounts with a target (%q) inside the root are not supported", raw.Target)
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// isHostShape says whether mounts are one host overlay or bind mount with
// nothing to transform: the root is mounted on the host and shared.
func isHostShape(ms []*mnt) bool {
	if len(ms) != 1 || len(ms[0].transforms) != 0 {
		return false
	}
	m := ms[0]
	if m.typ != "overlay" && m.typ != "bind" {
		return false
	}
	if strings.Contains(m.source, templateMark) {
		return false
	}
	for _, o := range m.options {
		if strings.Contains(o, templateMark) {
			return false
		}
	}
	return true
}

// Options the VM's kernel understands on any mount: they pass to the guest.
var genericFlags = map[string]bool{
	"ro": true, "rw": true, "defaults": true,
	"nodev": true, "dev": true, "nosuid": true, "suid": true, "noexec": true, "exec": true,
	"noatime": true, "atime": true, "relatime": true, "norelatime": true,
	"strictatime": true, "nostrictatime": true, "nodiratime": true, "diratime": true,
	"lazytime": true, "nolazytime": true, "sync": true, "async": true, "dirsync": true,
	"silent": true, "loud": true,
}

var propagationFlags = map[string]bool{
	"private": true, "rprivate": true, "shared": true, "rshared": true,
	"slave": true, "rslave": true, "unbindable": true, "runbindable": true,
}

// File system options msb passes through, by type; a trailing "=" allows
// any value.
var fsOptions = map[string][]string{
	"erofs":   {"user_xattr", "nouser_xattr", "acl", "noacl", "cache_strategy=", "fsid=", "domain_id="},
	"ext4":    {"user_xattr", "nouser_xattr", "acl", "noacl", "discard", "nodiscard", "noload", "data=", "errors=", "barrier", "nobarrier", "barrier=", "commit=", "journal_checksum", "nojournal_checksum", "init_itable", "noinit_itable", "init_itable="},
	"overlay": {"index=", "metacopy=", "redirect_dir=", "xino=", "volatile", "userxattr", "nfs_export=", "uuid=", "verity="},
	"bind":    {"bind", "rbind"},
}

// knownFSOption says whether o passes through on a mount of type typ.
func knownFSOption(typ, o string) bool {
	if genericFlags[o] {
		return true
	}
	if typ == "bind" && propagationFlags[o] {
		return true
	}
	for _, k := range fsOptions[typ] {
		if o == k || (strings.HasSuffix(k, "=") && strings.HasPrefix(o, k)) {
			return true
		}
	}
	return false
}

func isReadOnly(options []string) bool {
	ro := false
	for _, o := range options {
		switch o {
		case "ro":
			ro = true
		case "rw":
			ro = false
		}
	}
	return ro
}

// mkdirEntry parses containerd's X-containerd.mkdir.path value
// "path[:mode[:uid:gid]]" (mode octal, default 0700, as containerd's mkdir
// transform) into the agent's "path:mode". The agent runs as root: an
// owner other than 0:0 cannot be honoured and is refused.
func mkdirEntry(value string) (string, error) {
	parts := strings.SplitN(value, ":", 4)
	mode := uint64(0o700)
	switch len(parts) {
	case 4:
		if parts[2] != "0" || parts[3] != "0" {
			return "", fmt.Errorf("mkdir %q: owner %s:%s is not supported (only 0:0)", value, parts[2], parts[3])
		}
		fallthrough
	case 2:
		m, err := strconv.ParseUint(parts[1], 8, 32)
		if err != nil || m&^0o7777 != 0 {
			return "", fmt.Errorf("mkdir %q: invalid octal mode %q", value, parts[1])
		}
		mode = m
	case 1:
	default:
		return "", fmt.Errorf("mkdir %q: want path[:mode[:uid:gid]]", value)
	}
	p := parts[0]
	if !path.IsAbs(p) {
		return "", fmt.Errorf("mkdir %q: path must be absolute", value)
	}
	return fmt.Sprintf("%s:%04o", path.Clean(p), mode), nil
}

// mkfsSpec is what the X-containerd.mkfs.* options of a mkfs mount ask for.
type mkfsSpec struct {
	fs   string
	size int64
	uuid string
}

func parseMkfsOption(spec *mkfsSpec, o string) error {
	key, value, ok := strings.Cut(strings.TrimPrefix(o, optMkfs), "=")
	if !ok {
		value = "true"
	}
	switch key {
	case "fs":
		spec.fs = value
	case "size":
		n, err := parseSize(value)
		if err != nil {
			return fmt.Errorf("option %s: %v", o, err)
		}
		spec.size = n
	case "uuid":
		spec.uuid = value
	default:
		return fmt.Errorf("unknown mkfs option %s", o)
	}
	return nil
}

// sizeRE is go-units' RAMInBytes pattern, which containerd's mkfs
// transform uses for X-containerd.mkfs.size.
var sizeRE = regexp.MustCompile(`^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$`)

// parseSize parses a size like containerd's mkfs transform
// (github.com/docker/go-units RAMInBytes): a number with an optional
// k/m/g/t/p suffix, optionally followed by "i" and/or "b", all binary (1024)
// multiples.
func parseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	if m[2] != "" {
		f *= float64(int64(1) << (10 * (strings.IndexByte("kmgtp", strings.ToLower(m[2])[0]) + 1)))
	}
	if f >= 1<<62 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(f), nil
}
