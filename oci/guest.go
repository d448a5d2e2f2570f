package oci

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/rootfs"
	"github.com/msb-runtime/msb/vm"
)

// MinRootDisks is what a root on disks needs at least (the ext4 upper and
// one layer, flattened if need be): the default share budget leaves it.
const MinRootDisks = 2

// GuestOptions say where the container lives in the guest.
type GuestOptions struct {
	// ContainerID names the guest directory (rootfs.GuestDir).
	ContainerID string
	// Root is the guest root, rootfs.RootPath(ContainerID).
	Root string
	// MaxShares is how many virtio-fs shares the bind mounts may use; 0
	// means vm.MaxDisks - MinRootDisks. The rest of vm.MaxDisks is for the
	// root: pass vm.MaxDisks - len(Guest.Shares) to rootfs.Prepare.
	MaxShares int
	// PodSandboxID is the CRI pod sandbox of a container whose pod runs
	// in one VM ("" for none): paths to the sandbox's IPC and UTS
	// namespaces then name what the guest's containers share already and
	// are dropped, and a path to its PID namespace becomes the guest's
	// "container:<sandbox id>", instead of being refused.
	PodSandboxID string
}

// Guest is the container as the VM runs it.
type Guest struct {
	// Spec is a rewritten copy of the spec for the agent
	// (CreateContainerRequest.spec, as JSON).
	Spec *specs.Spec
	// Shares are virtio-fs shares of host directories for vm.Spec.Shares.
	Shares []vm.Share
	// Mounts mount the shares in the guest: put them before the rootfs
	// plan in CreateContainerRequest.rootfs.
	Mounts []*api.Mount
	// NetNS is the host network namespace the container asked to join
	// ("" for none); the guest spec has no network namespace entry then, so
	// the container uses the VM's.
	NetNS string
	// HostHooks are the hooks the shim must run on the host
	// (createRuntime, prestart, poststart, poststop); nil when there are
	// none.
	HostHooks *specs.Hooks
	// Warnings say what was dropped, and why; the shim logs them.
	Warnings []string
}

// SharesDir is where the guest mounts container id's virtio-fs shares.
func SharesDir(id string) string { return path.Join(rootfs.GuestDir(id), "shares") }

// GuestSpec rewrites spec for the guest; see the package documentation for
// what is translated, refused or dropped. spec itself is not changed.
func GuestSpec(spec *specs.Spec, opts GuestOptions) (*Guest, error) {
	if spec == nil {
		return nil, fmt.Errorf("no OCI spec: %w", errdefs.ErrInvalidArgument)
	}
	if opts.ContainerID == "" || strings.ContainsAny(opts.ContainerID, "/\x00") || opts.ContainerID == "." || opts.ContainerID == ".." {
		return nil, fmt.Errorf("container id %q is invalid: %w", opts.ContainerID, errdefs.ErrInvalidArgument)
	}
	if !path.IsAbs(opts.Root) {
		return nil, fmt.Errorf("guest root %q is not an absolute path: %w", opts.Root, errdefs.ErrInvalidArgument)
	}
	if opts.MaxShares == 0 {
		opts.MaxShares = vm.MaxDisks - MinRootDisks
	}
	if err := Process(spec.Process); err != nil {
		return nil, err
	}
	s, err := deepCopy(spec)
	if err != nil {
		return nil, err
	}
	g := &Guest{Spec: s}
	switch {
	case s.Windows != nil:
		return nil, unsupported("the windows section")
	case s.Solaris != nil:
		return nil, unsupported("the solaris section")
	case s.VM != nil:
		return nil, unsupported("the vm section (msb chooses the VM's kernel and image itself)")
	case s.ZOS != nil:
		return nil, unsupported("the zos section")
	case s.FreeBSD != nil:
		return nil, unsupported("the freebsd section")
	}
	readonly := s.Root != nil && s.Root.Readonly
	s.Root = &specs.Root{Path: opts.Root, Readonly: readonly}

	if err := g.hooks(); err != nil {
		return nil, err
	}
	if err := g.linux(opts.PodSandboxID); err != nil {
		return nil, err
	}
	if err := g.mounts(opts); err != nil {
		return nil, err
	}
	return g, nil
}

func unsupported(what string) error {
	return fmt.Errorf("%s cannot be honoured in a microVM: %w", what, errdefs.ErrNotImplemented)
}

func deepCopy(s *specs.Spec) (*specs.Spec, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("copy OCI spec: %w", err)
	}
	var c specs.Spec
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("copy OCI spec: %w", err)
	}
	return &c, nil
}

func (g *Guest) warnf(format string, args ...any) {
	g.Warnings = append(g.Warnings, fmt.Sprintf(format, args...))
}

func (g *Guest) hooks() error {
	h := g.Spec.Hooks
	g.Spec.Hooks = nil
	if h == nil {
		return nil
	}
	if len(h.CreateContainer) > 0 || len(h.StartContainer) > 0 {
		return fmt.Errorf("OCI hooks createContainer/startContainer run inside the container, "+
			"where the host's hook binaries (%s) do not exist in a microVM: %w", hookPaths(h.CreateContainer, h.StartContainer), errdefs.ErrNotImplemented)
	}
	host := &specs.Hooks{Prestart: h.Prestart, CreateRuntime: h.CreateRuntime, Poststart: h.Poststart, Poststop: h.Poststop} //nolint:staticcheck // Prestart is deprecated, still honoured
	if len(host.Prestart)+len(host.CreateRuntime)+len(host.Poststart)+len(host.Poststop) == 0 {
		return nil
	}
	g.HostHooks = host
	return nil
}

func hookPaths(lists ...[]specs.Hook) string {
	var ps []string
	for _, l := range lists {
		for _, h := range l {
			ps = append(ps, h.Path)
		}
	}
	return strings.Join(ps, ", ")
}

// guestDevices are devices every Linux guest has, with the host's numbers.
var guestDevices = map[[2]int64]string{
	{1, 3}: "null", {1, 5}: "zero", {1, 7}: "full", {1, 8}: "random", {1, 9}: "urandom",
	{5, 0}: "tty", {5, 1}: "console", {5, 2}: "ptmx", {10, 200}: "net/tun", {10, 229}: "fuse",
}

// podShared are the namespaces a CRI pod's containers join from its
// sandbox; in msb's guest every container of the VM shares them.
var podShared = map[specs.LinuxNamespaceType]bool{
	specs.IPCNamespace: true, specs.UTSNamespace: true,
}

func hasUserNamespace(ns []specs.LinuxNamespace) bool {
	return slices.ContainsFunc(ns, func(n specs.LinuxNamespace) bool { return n.Type == specs.UserNamespace })
}

// checkUserNamespace: a user namespace comes with uid and gid mappings
// that map the container's root, and mappings with a user namespace. The
// host ids of the mappings are guest ids in the VM: its kernel knows no
// others.
func checkUserNamespace(l *specs.Linux) error {
	has := hasUserNamespace(l.Namespaces)
	switch {
	case !has && (len(l.UIDMappings) > 0 || len(l.GIDMappings) > 0):
		return fmt.Errorf("uidMappings/gidMappings without a user namespace: %w", errdefs.ErrInvalidArgument)
	case !has:
		return nil
	}
	for _, m := range []struct {
		what string
		ids  []specs.LinuxIDMapping
	}{{"uidMappings", l.UIDMappings}, {"gidMappings", l.GIDMappings}} {
		if err := checkIDMappings(m.ids); err != nil {
			return fmt.Errorf("user namespace %s: %w", m.what, err)
		}
	}
	return nil
}

func checkIDMappings(ids []specs.LinuxIDMapping) error {
	if len(ids) == 0 {
		return fmt.Errorf("none given: %w", errdefs.ErrInvalidArgument)
	}
	if len(ids) > 340 { // the kernel's limit on uid_map lines
		return fmt.Errorf("%d mappings, at most 340: %w", len(ids), errdefs.ErrInvalidArgument)
	}
	if err := checkIDRanges(ids); err != nil {
		return err
	}
	if !slices.ContainsFunc(ids, func(m specs.LinuxIDMapping) bool { return m.ContainerID == 0 }) {
		return fmt.Errorf("id 0 (the container's root) is not mapped: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// checkIDRanges refuses an empty mapping and one that runs past the
// 32-bit id space.
func checkIDRanges(ids []specs.LinuxIDMapping) error {
	for _, m := range ids {
		if m.Size == 0 || uint64(m.ContainerID)+uint64(m.Size) > 1<<32 || uint64(m.HostID)+uint64(m.Size) > 1<<32 {
			return fmt.Errorf("mapping %d:%d:%d is empty or out of range: %w", m.ContainerID, m.HostID, m.Size, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func (g *Guest) linux(podSandbox string) error {
	l := g.Spec.Linux
	if l == nil {
		return nil
	}
	if l.IntelRdt != nil {
		return unsupported("linux.intelRdt (host cache and memory bandwidth allocation)")
	}
	if len(l.NetDevices) > 0 {
		return unsupported("linux.netDevices (moving host network interfaces into the container)")
	}
	if l.MemoryPolicy != nil {
		g.warnf("linux.memoryPolicy names host NUMA nodes: dropped")
		l.MemoryPolicy = nil
	}
	if err := checkUserNamespace(l); err != nil {
		return err
	}
	var ns []specs.LinuxNamespace
	for _, n := range l.Namespaces {
		switch {
		case n.Type == specs.UserNamespace:
			// A host user namespace (CRI's pinned one for the pod) means
			// nothing in the guest: the agent makes one with the mappings.
			ns = append(ns, specs.LinuxNamespace{Type: specs.UserNamespace})
		case n.Path == "":
			ns = append(ns, n)
		case n.Type == specs.NetworkNamespace:
			// The container uses the VM's network namespace; the VMM
			// connects the VM to this one.
			g.NetNS = n.Path
		case podSandbox != "" && podShared[n.Type]:
			// The pod sandbox's, which its containers share in the VM.
		case podSandbox != "" && n.Type == specs.PIDNamespace:
			// The pod shares its sandbox's PID namespace (CRI's POD mode).
			n.Path = api.ContainerNamespace(podSandbox)
			ns = append(ns, n)
		default:
			return fmt.Errorf("joining the host's %s namespace %s cannot be done from a microVM "+
				"(only a network namespace path is accepted): %w", n.Type, n.Path, errdefs.ErrNotImplemented)
		}
	}
	l.Namespaces = ns
	for _, d := range l.Devices {
		if d.Type == "p" {
			continue
		}
		if _, ok := guestDevices[[2]int64{d.Major, d.Minor}]; !ok || (d.Type != "c" && d.Type != "u") {
			return fmt.Errorf("host device %s (%s %d:%d) cannot be passed into the VM (it has only %s): %w",
				d.Path, d.Type, d.Major, d.Minor, strings.Join(sortedValues(guestDevices), ", "), errdefs.ErrNotImplemented)
		}
	}
	if r := l.Resources; r != nil {
		if r.CPU != nil && (r.CPU.Cpus != "" || r.CPU.Mems != "") {
			g.warnf("linux.resources.cpu.cpus %q / mems %q name host CPUs and NUMA nodes: dropped "+
				"(the VM's vCPU count follows them; see VMSize)", r.CPU.Cpus, r.CPU.Mems)
			r.CPU.Cpus, r.CPU.Mems = "", ""
		}
		if b := r.BlockIO; b != nil {
			n := len(b.WeightDevice) + len(b.ThrottleReadBpsDevice) + len(b.ThrottleWriteBpsDevice) +
				len(b.ThrottleReadIOPSDevice) + len(b.ThrottleWriteIOPSDevice)
			if n > 0 {
				g.warnf("%d linux.resources.blockIO per-device rules name host block devices: dropped", n)
				b.WeightDevice, b.ThrottleReadBpsDevice, b.ThrottleWriteBpsDevice = nil, nil, nil
				b.ThrottleReadIOPSDevice, b.ThrottleWriteIOPSDevice = nil, nil
			}
		}
	}
	return nil
}

func sortedValues(m map[[2]int64]string) []string {
	var v []string
	for _, s := range m {
		v = append(v, s)
	}
	sort.Strings(v)
	return v
}

// Mount types that mean the same inside the VM.
var passThroughTypes = map[string]bool{
	"proc": true, "sysfs": true, "devpts": true, "tmpfs": true, "mqueue": true, "cgroup": true, "cgroup2": true,
}

// Bind mount options the guest can honour.
var bindOptions = map[string]bool{
	"bind": true, "rbind": true, "ro": true, "rw": true, "defaults": true,
	"nosuid": true, "suid": true, "nodev": true, "dev": true, "noexec": true, "exec": true,
	"noatime": true, "atime": true, "relatime": true, "norelatime": true, "strictatime": true, "nostrictatime": true,
	"nodiratime": true, "diratime": true, "nosymfollow": true, "symfollow": true, "sync": true, "async": true,
	"rro": true, "rrw": true, "rnosuid": true, "rsuid": true, "rnodev": true, "rdev": true, "rnoexec": true, "rexec": true,
	"rnoatime": true, "ratime": true, "rrelatime": true, "rnorelatime": true, "rstrictatime": true, "rnostrictatime": true,
	"rnodiratime": true, "rdiratime": true, "rnosymfollow": true, "rsymfollow": true,
	"private": true, "rprivate": true, "slave": true, "rslave": true, "unbindable": true, "runbindable": true,
}

// BindOptions are the bind mount options msb honours, sorted.
func BindOptions() []string { return slices.Sorted(maps.Keys(bindOptions)) }

func isBind(m specs.Mount) bool {
	return m.Type == "bind" || m.Type == "rbind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

func bindReadOnly(opts []string) bool {
	ro := false
	for _, o := range opts {
		switch o {
		case "ro", "rro":
			ro = true
		case "rw", "rrw":
			ro = false
		}
	}
	return ro
}

// bind is one bind mount of the spec, resolved on the host.
type bind struct {
	index int    // in spec.Mounts
	dir   string // host directory to share
	rel   string // the source below dir ("" for dir itself)
	ro    bool
	rro   bool // read-only all the way down; a plain "ro" is the top mount only
	idmap idMap
	slave bool // rslave: the host's later mounts below it reach it
}

// idMap is an idmapped bind's mappings in containerd's form; zero for none.
type idMap struct{ uids, gids string }

// share is one virtio-fs share and the binds it serves.
type share struct {
	dir   string
	ro    bool
	rro   bool // read-only, and recursively: some bind asked for "rro"
	idmap idMap
	slave bool
	tag   string
	first int // first spec mount using it, for a stable order
}

func (g *Guest) mounts(opts GuestOptions) error {
	s := g.Spec
	var binds []*bind
	for i, m := range s.Mounts {
		where := fmt.Sprintf("mount %d (%s on %s)", i, m.Type, m.Destination)
		if !path.IsAbs(m.Destination) {
			return fmt.Errorf("%s: destination must be an absolute path: %w", where, errdefs.ErrInvalidArgument)
		}
		idm, err := takeMountIDMap(where, &s.Mounts[i], s.Linux)
		if err != nil {
			return err
		}
		m = s.Mounts[i]
		if !isBind(m) {
			if !passThroughTypes[m.Type] {
				return fmt.Errorf("%s: mount type %q cannot be honoured in the VM (it passes proc, sysfs, devpts, tmpfs, "+
					"mqueue, cgroup, cgroup2 and binds of host directories and files): %w", where, m.Type, errdefs.ErrNotImplemented)
			}
			continue
		}
		b, err := resolveBind(where, i, m)
		if err != nil {
			return err
		}
		b.idmap = idm
		binds = append(binds, b)
	}
	shares, byBind := planShares(binds)
	if len(shares) > opts.MaxShares {
		var dirs []string
		for _, sh := range shares {
			dirs = append(dirs, sh.dir)
		}
		return fmt.Errorf("the bind mounts need %d virtio-fs shares (%s), more than the %d the VM has room for "+
			"(vm.MaxDisks %d, of which the root needs %d): %w", len(shares), strings.Join(dirs, ", "),
			opts.MaxShares, vm.MaxDisks, MinRootDisks, errdefs.ErrResourceExhausted)
	}
	base := SharesDir(opts.ContainerID)
	for _, sh := range shares {
		// A share read-only at the top only is mounted writable: the host's
		// writable submounts below it must stay writable (the binds from
		// it are read-only in the guest, and its top on the host).
		mode := "rw"
		if sh.rro {
			mode = "ro"
		}
		g.Shares = append(g.Shares, vm.Share{Tag: sh.tag, Path: sh.dir, ReadOnly: sh.rro, ReadOnlyTop: sh.ro && !sh.rro,
			UIDMap: sh.idmap.uids, GIDMap: sh.idmap.gids, FollowHost: sh.slave})
		g.Mounts = append(g.Mounts, &api.Mount{Type: "virtiofs", Source: sh.tag, Target: path.Join(base, sh.tag), Options: []string{mode}})
	}
	for _, b := range binds {
		sh := byBind[b]
		rel, err := filepath.Rel(sh.dir, filepath.Join(b.dir, b.rel))
		if err != nil {
			return err
		}
		s.Mounts[b.index].Source = path.Join(base, sh.tag, filepath.ToSlash(rel))
	}
	return nil
}

func resolveBind(where string, i int, m specs.Mount) (*bind, error) {
	for _, o := range m.Options {
		switch {
		case o == "shared" || o == "rshared":
			return nil, fmt.Errorf("%s: %s propagation would have to reach the host, which a virtio-fs share cannot do: %w",
				where, o, errdefs.ErrNotImplemented)
		case !bindOptions[o]:
			return nil, fmt.Errorf("%s: bind option %q cannot be honoured in the VM: %w", where, o, errdefs.ErrNotImplemented)
		}
	}
	if !filepath.IsAbs(m.Source) {
		return nil, fmt.Errorf("%s: bind source %q is not an absolute host path: %w", where, m.Source, errdefs.ErrInvalidArgument)
	}
	src, err := filepath.EvalSymlinks(m.Source)
	if err != nil {
		return nil, fmt.Errorf("%s: bind source: %w: %w", where, err, errdefs.ErrNotFound)
	}
	st, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("%s: bind source: %w", where, err)
	}
	b := &bind{index: i, ro: bindReadOnly(m.Options), rro: slices.Contains(m.Options, "rro"),
		slave: slices.Contains(m.Options, "rslave") || slices.Contains(m.Options, "slave")}
	switch t := st.Mode().Type(); {
	case st.IsDir():
		b.dir = src
	case st.Mode().IsRegular():
		b.dir, b.rel = filepath.Dir(src), filepath.Base(src)
	default:
		what := map[os.FileMode]string{os.ModeSocket: "a socket", os.ModeNamedPipe: "a FIFO",
			os.ModeDevice: "a block device", os.ModeDevice | os.ModeCharDevice: "a character device"}[t]
		if what == "" {
			what = t.String()
		}
		return nil, fmt.Errorf("%s: bind source %s is %s, which a virtio-fs share cannot carry into the VM "+
			"(devices go in linux.devices): %w", where, src, what, errdefs.ErrNotImplemented)
	}
	return b, nil
}

// planShares picks one share per distinct host directory, folding a
// directory into a shared ancestor unless it needs write access to a
// read-only share.
func planShares(binds []*bind) ([]*share, map[*bind]*share) {
	// Binds that see the host differently (idmapped, following the
	// host's mounts) never share.
	type key struct {
		dir   string
		idmap idMap
		slave bool
	}
	type dirUse struct {
		key
		ro, rro bool
		first   int
		binds   []*bind
	}
	uses := map[key]*dirUse{}
	for _, b := range binds {
		k := key{b.dir, b.idmap, b.slave}
		u := uses[k]
		if u == nil {
			u = &dirUse{key: k, ro: true, first: b.index}
			uses[k] = u
		}
		u.ro = u.ro && b.ro
		u.rro = u.rro || b.rro
		u.binds = append(u.binds, b)
	}
	var dirs []*dirUse
	for _, u := range uses {
		dirs = append(dirs, u)
	}
	// Ancestors first.
	sort.Slice(dirs, func(i, j int) bool {
		if len(dirs[i].dir) != len(dirs[j].dir) {
			return len(dirs[i].dir) < len(dirs[j].dir)
		}
		return dirs[i].dir < dirs[j].dir
	})
	var shares []*share
	byBind := map[*bind]*share{}
	for _, u := range dirs {
		var into *share
		for _, sh := range shares {
			if within(u.dir, sh.dir) && (!sh.ro || u.ro) && sh.idmap == u.idmap && sh.slave == u.slave {
				into = sh
				break
			}
		}
		if into == nil {
			into = &share{dir: u.dir, ro: u.ro, rro: u.ro && u.rro, idmap: u.idmap, slave: u.slave,
				tag: shareTag(u.dir, u.ro, u.idmap, u.slave), first: u.first}
			shares = append(shares, into)
		}
		into.first = min(into.first, u.first)
		for _, b := range u.binds {
			byBind[b] = into
		}
	}
	sort.SliceStable(shares, func(i, j int) bool { return shares[i].first < shares[j].first })
	return shares, byBind
}

func within(dir, parent string) bool {
	return dir == parent || parent == "/" || strings.HasPrefix(dir, parent+"/")
}

// shareTag is "<base>-<hash>": see the package documentation.
func shareTag(dir string, ro bool, idmap idMap, slave bool) string {
	mode := "rw"
	if ro {
		mode = "ro"
	}
	key := dir + "\x00" + mode
	if idmap != (idMap{}) {
		key += "\x00" + idmap.uids + "\x00" + idmap.gids
	}
	if slave {
		key += "\x00slave"
	}
	sum := sha256.Sum256([]byte(key))
	base := []byte(filepath.Base(dir))
	if dir == "/" {
		base = []byte("root")
	}
	if len(base) > 12 {
		base = base[:12]
	}
	for i, c := range base {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			base[i] = '_'
		}
	}
	if c := base[0]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
		base = append([]byte("s"), base...)
	}
	return string(base) + "-" + hex.EncodeToString(sum[:6])
}

// takeMountIDMap takes an idmapped bind's mappings (its uidMappings and
// gidMappings, or with the "idmap"/"ridmap" option and none, the
// container's user namespace's, as runc does) out of m: the shim serves
// its share through an idmapped mount on the host, and the guest binds
// that as it is. Idmapped mounts are always recursive here, as a share is.
func takeMountIDMap(where string, m *specs.Mount, l *specs.Linux) (idMap, error) {
	opt := slices.Contains(m.Options, "idmap") || slices.Contains(m.Options, "ridmap")
	if !opt && len(m.UIDMappings) == 0 && len(m.GIDMappings) == 0 {
		return idMap{}, nil
	}
	if !isBind(*m) {
		return idMap{}, fmt.Errorf("%s: idmapped %s mounts: only binds can be idmapped in the VM: %w", where, m.Type, errdefs.ErrNotImplemented)
	}
	uids, gids := m.UIDMappings, m.GIDMappings
	if len(uids) == 0 && len(gids) == 0 && l != nil {
		uids, gids = l.UIDMappings, l.GIDMappings
	}
	if len(uids) == 0 || len(gids) == 0 {
		return idMap{}, fmt.Errorf("%s: an idmapped mount needs uid and gid mappings: %w", where, errdefs.ErrInvalidArgument)
	}
	for _, ids := range [][]specs.LinuxIDMapping{uids, gids} {
		if err := checkIDRanges(ids); err != nil {
			return idMap{}, fmt.Errorf("%s: %w", where, err)
		}
	}
	m.Options = slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return o == "idmap" || o == "ridmap" })
	m.UIDMappings, m.GIDMappings = nil, nil
	return idMap{uids: formatIDMappings(uids), gids: formatIDMappings(gids)}, nil
}

func formatIDMappings(ids []specs.LinuxIDMapping) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%d:%d:%d", id.ContainerID, id.HostID, id.Size)
	}
	return strings.Join(parts, ",")
}
