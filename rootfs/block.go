package rootfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/msb-runtime/msb/agent/api"
	agentmount "github.com/msb-runtime/msb/agent/mount"
	"github.com/msb-runtime/msb/share"
	"github.com/msb-runtime/msb/vm"
)

// builder turns the EROFS snapshotter's block-mode mounts into a Plan.
type builder struct {
	id     string
	opts   Options
	ms     []*mnt
	dir    string   // GuestDir(id)
	points []string // guest mount point of each mount

	upper *upperMount
	// upperOnDisk says the ext4 upper has a disk (else it is a file).
	upperOnDisk bool
	units       map[int]*unit // EROFS mounts by index
	final       *finalMount   // the last mount when it is an overlay or bind
	order       []*unit       // the layers the root stacks, top first
}

// upperMount is the ext4 image: the writable upper.
type upperMount struct {
	m        *mnt
	path     string    // host image
	mkfs     *mkfsSpec // nil without the mkfs transform
	readOnly bool
	opts     []string // guest options
	mkdirs   []string
}

// unit is one EROFS mount: a layer blob or an fsmeta with its device blobs.
type unit struct {
	m       *mnt
	blob    string   // host EROFS image
	devices []string // host device= blobs, in order
	point   string   // guest mount point
	opts    []string // guest options, without device= and loop
	mkdirs  []string
	onDisk  bool // a disk per image, else files in the VM's share
}

// cost is how many disks the unit needs.
func (u *unit) cost() int { return 1 + len(u.devices) }

// finalMount is the last mount: the overlay or bind that makes the root.
type finalMount struct {
	m      *mnt
	source string
	opts   []string // guest options; lowerdir is rebuilt from lowers
	mkdirs []string
	lowers []string // overlay lowerdir, resolved, top first
	upper  bool     // overlay has an upperdir
}

func (b *builder) build(ctx context.Context) (_ *Plan, retErr error) {
	b.dir = GuestDir(b.id)
	b.units = map[int]*unit{}
	if err := b.assignPoints(); err != nil {
		return nil, err
	}
	for i, m := range b.ms {
		if err := b.parse(m, b.points[:i]); err != nil {
			return nil, err
		}
	}
	if err := b.layerOrder(); err != nil {
		return nil, err
	}
	b.chooseDisks()

	// Everything is validated: now touch the file system.
	p := &Plan{Root: RootPath(b.id)}
	defer func() {
		if retErr == nil {
			return
		}
		for _, f := range p.Created {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				log.G(ctx).WithError(err).WithField("path", f).Warn("remove image after failed rootfs prepare")
			}
		}
	}()
	if u := b.upper; u != nil && u.mkfs != nil {
		created, err := ensureExt4(ctx, u.path, *u.mkfs, b.opts.MkfsExt4)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", u.m, err)
		}
		if created {
			p.Created = append(p.Created, u.path)
		}
	}
	if err := b.assemble(p); err != nil {
		return nil, err
	}
	return p, nil
}

func (b *builder) assignPoints() error {
	last := len(b.ms) - 1
	b.points = make([]string, len(b.ms))
	for i, m := range b.ms {
		switch {
		case i == last:
			b.points[i] = RootPath(b.id)
		case m.typ == "ext4":
			b.points[i] = path.Join(b.dir, "rw")
		case m.typ == "erofs":
			b.points[i] = path.Join(b.dir, "layers", fmt.Sprint(i))
		default:
			return m.errorf(errdefs.ErrNotImplemented, "only the last mount can be an %s; %s", m.typ, supportedHint)
		}
	}
	return nil
}

// inGuestDir says whether p is the container's guest directory or below it.
func (b *builder) inGuestDir(p string) bool {
	return path.IsAbs(p) && strings.HasPrefix(path.Clean(p)+"/", b.dir+"/")
}

// resolve applies the format transform's templates and pulls out the mkdir
// and mkfs options.
func (b *builder) resolve(m *mnt, points []string) (source string, opts, mkdirs []string, mkfs *mkfsSpec, err error) {
	format := m.has(transformFormat)
	expand := func(s string) (string, error) {
		if !strings.Contains(s, templateMark) {
			return s, nil
		}
		if !format {
			return "", m.errorf(errdefs.ErrInvalidArgument, "%q is a template but the mount has no format transform", s)
		}
		r, err := resolveTemplate(s, points)
		if err != nil {
			return "", m.errorf(errdefs.ErrInvalidArgument, "%v", err)
		}
		return r, nil
	}
	if source, err = expand(m.source); err != nil {
		return
	}
	if m.has(transformMkfs) {
		mkfs = &mkfsSpec{fs: "ext4"}
	}
	for _, o := range m.options {
		if o, err = expand(o); err != nil {
			return
		}
		switch {
		case strings.HasPrefix(o, optMkdirPath):
			if !m.has(transformMkdir) {
				return "", nil, nil, nil, m.errorf(errdefs.ErrInvalidArgument, "option %s needs the mkdir transform", o)
			}
			e, perr := mkdirEntry(strings.TrimPrefix(o, optMkdirPath))
			if perr != nil {
				return "", nil, nil, nil, m.errorf(errdefs.ErrInvalidArgument, "%v", perr)
			}
			if dir, _, _ := strings.Cut(e, ":"); !b.inGuestDir(dir) {
				return "", nil, nil, nil, m.errorf(errdefs.ErrNotImplemented,
					"directory %s is on the host; %s", dir, blockModeHint)
			}
			mkdirs = append(mkdirs, e)
		case strings.HasPrefix(o, optMkfs):
			if mkfs == nil {
				return "", nil, nil, nil, m.errorf(errdefs.ErrInvalidArgument, "option %s needs the mkfs transform", o)
			}
			if perr := parseMkfsOption(mkfs, o); perr != nil {
				return "", nil, nil, nil, m.errorf(errdefs.ErrInvalidArgument, "%v", perr)
			}
		case strings.HasPrefix(o, optDmverity):
			return "", nil, nil, nil, m.errorf(errdefs.ErrNotImplemented,
				"dm-verity protected layers cannot be verified in the VM yet: set dmverity_mode = 'off' in "+
					"[plugins.'io.containerd.snapshotter.v1.erofs'] (option %s)", o)
		case strings.HasPrefix(o, "X-containerd."):
			return "", nil, nil, nil, m.errorf(errdefs.ErrNotImplemented, "unknown containerd option %s", o)
		default:
			opts = append(opts, o)
		}
	}
	return source, opts, mkdirs, mkfs, nil
}

func (b *builder) parse(m *mnt, points []string) error {
	source, opts, mkdirs, mkfs, err := b.resolve(m, points)
	if err != nil {
		return err
	}
	if mkfs != nil && m.typ != "ext4" {
		return m.errorf(errdefs.ErrNotImplemented, "mkfs of a %s mount is not supported (only ext4)", m.typ)
	}
	point := b.points[m.index]
	switch m.typ {
	case "ext4":
		return b.parseUpper(m, source, opts, mkdirs, mkfs)
	case "erofs":
		return b.parseErofs(m, source, opts, mkdirs, point)
	case "overlay":
		return b.parseOverlay(m, source, opts, mkdirs)
	case "bind":
		return b.parseBind(m, source, opts, mkdirs)
	}
	return m.errorf(errdefs.ErrNotImplemented, "mount type %q is not supported", m.typ)
}

func hostFile(m *mnt, what, p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return m.errorf(errdefs.ErrInvalidArgument, "%s %q must be an absolute, clean host path", what, p)
	}
	st, err := os.Stat(p)
	if err != nil {
		return m.errorf(errdefs.ErrNotFound, "%s: %v", what, err)
	}
	if !st.Mode().IsRegular() {
		return m.errorf(errdefs.ErrInvalidArgument, "%s %s is not a regular file (%s)", what, p, st.Mode().Type())
	}
	return nil
}

func (b *builder) parseUpper(m *mnt, source string, opts, mkdirs []string, mkfs *mkfsSpec) error {
	if b.upper != nil {
		return m.errorf(errdefs.ErrNotImplemented, "a second ext4 image (the first is mount %d) is not supported", b.upper.m.index)
	}
	if !filepath.IsAbs(source) || filepath.Clean(source) != source {
		return m.errorf(errdefs.ErrInvalidArgument, "image %q must be an absolute, clean host path", source)
	}
	u := &upperMount{m: m, path: source, mkfs: mkfs, mkdirs: mkdirs, readOnly: isReadOnly(opts)}
	for _, o := range opts {
		switch {
		case o == "loop":
		case knownFSOption("ext4", o):
			u.opts = append(u.opts, o)
		default:
			return m.errorf(errdefs.ErrNotImplemented, "unknown ext4 option %q", o)
		}
	}
	if mkfs != nil {
		if mkfs.fs != "ext4" {
			return m.errorf(errdefs.ErrNotImplemented, "mkfs file system %q is not supported (only ext4)", mkfs.fs)
		}
		if mkfs.size <= 0 {
			return m.errorf(errdefs.ErrInvalidArgument, "mkfs needs a positive X-containerd.mkfs.size")
		}
	} else if err := hostFile(m, "ext4 image", source); err != nil {
		return err
	}
	b.upper = u
	return nil
}

func (b *builder) parseErofs(m *mnt, source string, opts, mkdirs []string, point string) error {
	if err := hostFile(m, "EROFS image", source); err != nil {
		return err
	}
	u := &unit{m: m, blob: source, point: point, mkdirs: mkdirs, opts: []string{"ro"}}
	for _, o := range opts {
		switch {
		case o == "loop" || o == "ro":
		case o == "rw":
			return m.errorf(errdefs.ErrInvalidArgument, "EROFS is read-only; option rw cannot be honoured")
		case strings.HasPrefix(o, "device="):
			dev := strings.TrimPrefix(o, "device=")
			if err := hostFile(m, "EROFS device blob", dev); err != nil {
				return err
			}
			u.devices = append(u.devices, dev)
		case knownFSOption("erofs", o):
			u.opts = append(u.opts, o)
		default:
			return m.errorf(errdefs.ErrNotImplemented, "unknown EROFS option %q", o)
		}
	}
	b.units[m.index] = u
	return nil
}

func (b *builder) parseOverlay(m *mnt, source string, opts, mkdirs []string) error {
	f := &finalMount{m: m, source: source, mkdirs: mkdirs}
	var upper, work, uidmap, gidmap string
	hasLower := false
	for _, o := range opts {
		key, value, _ := strings.Cut(o, "=")
		switch key {
		case "lowerdir":
			if hasLower {
				return m.errorf(errdefs.ErrInvalidArgument, "lowerdir given twice")
			}
			hasLower = true
			f.lowers = strings.Split(value, ":")
			f.opts = append(f.opts, "lowerdir=") // rebuilt by assemble
			continue
		case "upperdir":
			upper = value
		case "workdir":
			work = value
		case "uidmap":
			// A user-namespace container's layers: the agent idmaps them.
			uidmap = value
		case "gidmap":
			gidmap = value
		default:
			if !knownFSOption("overlay", o) {
				return m.errorf(errdefs.ErrNotImplemented, "unknown overlay option %q", o)
			}
		}
		f.opts = append(f.opts, o)
	}
	if uidmap != "" || gidmap != "" {
		if _, err := agentmount.ParseIDMap(uidmap, gidmap); err != nil {
			return m.errorf(errdefs.ErrInvalidArgument, "idmapped layers: %v", err)
		}
	}
	if !hasLower || len(f.lowers) == 0 || slices.Contains(f.lowers, "") {
		return m.errorf(errdefs.ErrInvalidArgument, "overlay needs a lowerdir")
	}
	if (upper == "") != (work == "") {
		return m.errorf(errdefs.ErrInvalidArgument, "overlay needs both upperdir and workdir, or neither")
	}
	for _, d := range []string{upper, work} {
		if d != "" && !b.inGuestDir(d) {
			return m.errorf(errdefs.ErrNotImplemented, "upper directory %s is on the host; %s", d, blockModeHint)
		}
	}
	if upper != "" && (b.upper == nil || !strings.HasPrefix(path.Clean(upper)+"/", b.points[b.upper.m.index]+"/")) {
		return m.errorf(errdefs.ErrInvalidArgument, "upperdir %s is not on the writable ext4 image", upper)
	}
	f.upper = upper != ""
	b.final = f
	return nil
}

func (b *builder) parseBind(m *mnt, source string, opts, mkdirs []string) error {
	if !b.inGuestDir(source) {
		return m.errorf(errdefs.ErrNotImplemented, "bind source %s is a host path next to VM disks; %s", source, supportedHint)
	}
	f := &finalMount{m: m, source: path.Clean(source), mkdirs: mkdirs}
	for _, o := range opts {
		if !knownFSOption("bind", o) {
			return m.errorf(errdefs.ErrNotImplemented, "unknown bind option %q", o)
		}
		f.opts = append(f.opts, o)
	}
	b.final = f
	return nil
}

// layerOrder finds the layers the root stacks, top first, and checks that
// every EROFS mount is one of them, exactly once.
func (b *builder) layerOrder() error {
	byPoint := map[string]*unit{}
	for _, u := range b.units {
		byPoint[u.point] = u
	}
	last := b.ms[len(b.ms)-1]
	switch {
	case b.units[last.index] != nil: // the root is one EROFS mount (a view)
		b.order = []*unit{b.units[last.index]}
	case b.final != nil && last.typ == "overlay":
		for _, l := range b.final.lowers {
			u := byPoint[path.Clean(l)]
			if u == nil {
				what := "not the mount point of an EROFS layer"
				if !b.inGuestDir(l) {
					what = "a host directory; " + supportedHint
				}
				return last.errorf(errdefs.ErrNotImplemented, "lower directory %s is %s", l, what)
			}
			if containsUnit(b.order, u) {
				return last.errorf(errdefs.ErrInvalidArgument, "lower directory %s is listed twice", l)
			}
			b.order = append(b.order, u)
		}
	case b.final != nil && last.typ == "bind":
		for p, u := range byPoint {
			if strings.HasPrefix(b.final.source+"/", p+"/") {
				b.order = []*unit{u}
			}
		}
	}
	for i := range b.ms {
		if u := b.units[i]; u != nil && !containsUnit(b.order, u) {
			return u.m.errorf(errdefs.ErrNotImplemented, "EROFS layer is not used by the root")
		}
	}
	return nil
}

func containsUnit(us []*unit, u *unit) bool {
	for _, v := range us {
		if v == u {
			return true
		}
	}
	return false
}

// chooseDisks gives the ext4 upper a disk, then the top layers one each
// (and one per device blob), as long as Options.Disks allows; the rest
// reach the guest as files in the VM's share. A layer is on disks or in
// files as a whole: EROFS opens its device blobs the way it opened the image.
func (b *builder) chooseDisks() {
	left := b.opts.Disks
	if b.upper != nil && left > 0 {
		b.upperOnDisk = true
		left--
	}
	for _, u := range b.order {
		if u.cost() > left {
			return
		}
		u.onDisk = true
		left -= u.cost()
	}
}

// serial makes a disk serial and checks its length.
func (b *builder) serial(suffix string) (string, error) {
	s := b.opts.SerialPrefix + "-" + suffix
	if len(s) > 20 {
		return "", fmt.Errorf("container %s: disk serial %q is longer than 20 bytes: %w", b.id, s, errdefs.ErrInvalidArgument)
	}
	return s, nil
}

// image places one host image: a disk with the serial prefix-<name>, or a
// file export <name>. It returns the guest source that names it.
func (b *builder) image(p *Plan, name, host string, onDisk, readOnly bool) (string, error) {
	if !onDisk {
		p.Exports = append(p.Exports, share.Export{Name: name, Source: host, ReadOnly: readOnly})
		return share.GuestPath(b.id, name), nil
	}
	id, err := b.serial(name)
	if err != nil {
		return "", err
	}
	p.Disks = append(p.Disks, vm.Disk{ID: id, Path: host, Format: "raw", ReadOnly: readOnly})
	return diskSource(id), nil
}

func (b *builder) assemble(p *Plan) error {
	for i, m := range b.ms {
		if u := b.upper; u != nil && u.m == m {
			src, err := b.image(p, "rw", u.path, b.upperOnDisk, u.readOnly)
			if err != nil {
				return err
			}
			opts := u.opts
			if !b.upperOnDisk {
				// The guest attaches the file to a loop device. No write
				// barriers: each would be a round trip to the file server
				// and an fsync of the image on the host, whose durability
				// no one asks for (runc's upper directory is not synced
				// either). The writes themselves reach the host file in
				// order (virtio-fs writes through), so the image stays
				// consistent for a journal replay if the VM dies; measured
				// under TCG: its unmount 40 ms → 14 ms.
				opts = append(slices.Clone(opts), "loop", "nobarrier")
			}
			p.Mounts = append(p.Mounts, &api.Mount{Type: "ext4", Source: src, Target: b.points[i], Options: opts, Mkdirs: u.mkdirs})
			continue
		}
		if u := b.units[i]; u != nil {
			if err := b.assembleLayer(p, i, u); err != nil {
				return err
			}
			continue
		}
		p.Mounts = append(p.Mounts, b.finalGuestMount())
	}
	if last := p.Mounts[len(p.Mounts)-1]; last.Target != p.Root {
		return fmt.Errorf("container %s: internal error: the plan ends at %s, not at the root %s", b.id, last.Target, p.Root)
	}
	return nil
}

// assembleLayer places one EROFS mount and its device blobs.
func (b *builder) assembleLayer(p *Plan, i int, u *unit) error {
	src, err := b.image(p, fmt.Sprintf("l%d", i), u.blob, u.onDisk, true)
	if err != nil {
		return err
	}
	opts := append([]string{}, u.opts...)
	for j, dev := range u.devices {
		d, err := b.image(p, fmt.Sprintf("l%dd%d", i, j), dev, u.onDisk, true)
		if err != nil {
			return err
		}
		opts = append(opts, "device="+d)
	}
	p.Mounts = append(p.Mounts, &api.Mount{Type: "erofs", Source: src, Target: u.point, Options: opts, Mkdirs: u.mkdirs})
	return nil
}

// finalGuestMount builds the root's overlay or bind.
func (b *builder) finalGuestMount() *api.Mount {
	f, root := b.final, RootPath(b.id)
	if f.m.typ == "bind" {
		return &api.Mount{Type: "bind", Source: f.source, Target: root, Options: f.opts, Mkdirs: f.mkdirs}
	}
	if !f.upper && len(f.lowers) == 1 {
		// A read-only overlay of one layer: overlayfs refuses a single
		// lowerdir without an upperdir on older kernels; a bind is the same.
		return &api.Mount{Type: "bind", Source: path.Clean(f.lowers[0]), Target: root, Options: []string{"rbind", "ro"}, Mkdirs: f.mkdirs}
	}
	opts := make([]string, 0, len(f.opts))
	for _, o := range f.opts {
		if o == "lowerdir=" {
			o = "lowerdir=" + strings.Join(f.lowers, ":")
		}
		opts = append(opts, o)
	}
	return &api.Mount{Type: "overlay", Source: "overlay", Target: root, Options: opts, Mkdirs: f.mkdirs}
}
