package oci

import (
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
	"github.com/msb-runtime/msb/share"
)

// GuestOptions say where the container lives in the guest.
type GuestOptions struct {
	// ContainerID names the guest directory (rootfs.GuestDir).
	ContainerID string
	// Root is the guest root, rootfs.RootPath(ContainerID).
	Root string
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
	// Exports are the host files and directories the spec binds, one per
	// bind mount (named share.BindName(i) for spec mount i): the shim binds
	// them into the VM's share, and the guest spec's bind sources name them
	// there.
	Exports []share.Export
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
	if err := g.devices(l); err != nil {
		return err
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

// devices keeps the spec's devices that the VM has. A privileged container
// (CRI's and ctr's privileged: every device allowed, CAP_SYS_ADMIN) gets the
// host's whole /dev listed by containerd, unless the runtime handler sets
// privileged_without_host_devices; in a VM privileged means the VM's own
// devices, so the host's that the VM lacks are dropped with one warning.
// For any other container such a device is an error: it asked for a device
// it cannot have.
func (g *Guest) devices(l *specs.Linux) error {
	privileged := allDevicesAllowed(l.Resources) && hasCapability(g.Spec.Process, "CAP_SYS_ADMIN")
	var kept []specs.LinuxDevice
	var dropped []string
	for _, d := range l.Devices {
		_, known := guestDevices[[2]int64{d.Major, d.Minor}]
		switch {
		case d.Type == "p" || known && (d.Type == "c" || d.Type == "u"):
			kept = append(kept, d)
		case privileged:
			dropped = append(dropped, d.Path)
		default:
			return fmt.Errorf("host device %s (%s %d:%d) cannot be passed into the VM (it has only %s): %w",
				d.Path, d.Type, d.Major, d.Minor, strings.Join(sortedValues(guestDevices), ", "), errdefs.ErrNotImplemented)
		}
	}
	if len(dropped) > 0 {
		g.warnf("privileged container: %d host devices the VM does not have are not passed into it (%s); "+
			"it gets the VM's own devices (set privileged_without_host_devices = true on the runtime handler "+
			"to stop containerd listing them)", len(dropped), strings.Join(dropped, " "))
	}
	l.Devices = kept
	return nil
}

// allDevicesAllowed says whether the device rules let the container use
// every device (the last rule for all devices allows rwm, none after it
// denies one).
func allDevicesAllowed(r *specs.LinuxResources) bool {
	if r == nil {
		return false
	}
	all := false
	for _, d := range r.Devices {
		switch {
		case (d.Type == "" || d.Type == "a") && d.Major == nil && d.Minor == nil:
			all = d.Allow && strings.ContainsRune(d.Access, 'r') && strings.ContainsRune(d.Access, 'w') && strings.ContainsRune(d.Access, 'm')
		case !d.Allow:
			all = false
		}
	}
	return all
}

func hasCapability(p *specs.Process, c string) bool {
	return p != nil && p.Capabilities != nil && slices.Contains(p.Capabilities.Bounding, c)
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

func (g *Guest) mounts(opts GuestOptions) error {
	s := g.Spec
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
		e, err := bindExport(where, i, m)
		if err != nil {
			return err
		}
		e.UIDMap, e.GIDMap = idm.uids, idm.gids
		g.Exports = append(g.Exports, e)
		s.Mounts[i].Source = share.GuestPath(opts.ContainerID, e.Name)
	}
	return nil
}

// bindExport checks bind mount i and returns what the shim must export for
// it: exactly its source, a file or a directory, read-only as it says.
func bindExport(where string, i int, m specs.Mount) (share.Export, error) {
	for _, o := range m.Options {
		switch {
		case o == "shared" || o == "rshared":
			return share.Export{}, fmt.Errorf("%s: %s propagation would have to reach the host, which a virtio-fs share cannot do: %w",
				where, o, errdefs.ErrNotImplemented)
		case !bindOptions[o]:
			return share.Export{}, fmt.Errorf("%s: bind option %q cannot be honoured in the VM: %w", where, o, errdefs.ErrNotImplemented)
		}
	}
	if !filepath.IsAbs(m.Source) {
		return share.Export{}, fmt.Errorf("%s: bind source %q is not an absolute host path: %w", where, m.Source, errdefs.ErrInvalidArgument)
	}
	src, err := filepath.EvalSymlinks(m.Source)
	if err != nil {
		return share.Export{}, fmt.Errorf("%s: bind source: %w: %w", where, err, errdefs.ErrNotFound)
	}
	st, err := os.Stat(src)
	if err != nil {
		return share.Export{}, fmt.Errorf("%s: bind source: %w", where, err)
	}
	if t := st.Mode().Type(); !st.IsDir() && !st.Mode().IsRegular() {
		what := map[os.FileMode]string{os.ModeSocket: "a socket", os.ModeNamedPipe: "a FIFO",
			os.ModeDevice: "a block device", os.ModeDevice | os.ModeCharDevice: "a character device"}[t]
		if what == "" {
			what = t.String()
		}
		return share.Export{}, fmt.Errorf("%s: bind source %s is %s, which a virtio-fs share cannot carry into the VM "+
			"(devices go in linux.devices): %w", where, src, what, errdefs.ErrNotImplemented)
	}
	e := share.Export{
		Name:   share.BindName(i),
		Source: src,
		Dir:    st.IsDir(),
		// A plain "bind" is the directory alone, as runc makes it.
		Recursive:         st.IsDir() && (m.Type == "rbind" || slices.Contains(m.Options, "rbind")),
		ReadOnly:          bindReadOnly(m.Options),
		RecursiveReadOnly: slices.Contains(m.Options, "rro"),
		FollowHost:        slices.Contains(m.Options, "rslave") || slices.Contains(m.Options, "slave"),
	}
	return e, e.Validate()
}

// idMap is an idmapped bind's mappings in containerd's form; zero for none.
type idMap struct{ uids, gids string }

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
