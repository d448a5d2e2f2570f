// Package mount runs the guest mount plans the host sends (the steps that
// build a container's root file system) and holds the mount(2) helpers the
// rest of the agent shares.
package mount

import (
	"strings"

	"golang.org/x/sys/unix"
)

// Options is an fstab-style option list split into what mount(2) takes.
type Options struct {
	// Flags are the MS_* flags of the mount itself.
	Flags uintptr
	// Propagation is MS_SHARED, MS_PRIVATE, ... (with MS_REC), applied by a
	// second mount(2) call after the mount; 0 for none.
	Propagation uintptr
	// Data are the file system's own options (lowerdir=, size=, mode=...).
	Data []string
	// Mkdirs are containerd's X-containerd.mkdir.path= entries ("path:mode").
	Mkdirs []string
	// Loop: the source is an image file to attach to a loop device first.
	Loop bool
	// RecSet and RecClear are MOUNT_ATTR_* bits that the "r"-prefixed
	// options (rro, rnosuid, ...) apply with mount_setattr(2) to a bind
	// and every mount below it, as runc does.
	RecSet, RecClear uint64
}

// DataString is Data as mount(2)'s data argument.
func (o Options) DataString() string { return strings.Join(o.Data, ",") }

// IsBind says whether the options ask for a bind mount.
func (o Options) IsBind() bool { return o.Flags&unix.MS_BIND != 0 }

type flagOp struct {
	clear bool
	flag  uintptr
}

var flagOps = map[string]flagOp{
	"async":         {true, unix.MS_SYNCHRONOUS},
	"atime":         {true, unix.MS_NOATIME},
	"bind":          {false, unix.MS_BIND},
	"defaults":      {false, 0},
	"dev":           {true, unix.MS_NODEV},
	"diratime":      {true, unix.MS_NODIRATIME},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"exec":          {true, unix.MS_NOEXEC},
	"lazytime":      {false, unix.MS_LAZYTIME},
	"loud":          {true, unix.MS_SILENT},
	"mand":          {false, unix.MS_MANDLOCK},
	"noatime":       {false, unix.MS_NOATIME},
	"nodev":         {false, unix.MS_NODEV},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"noexec":        {false, unix.MS_NOEXEC},
	"nolazytime":    {true, unix.MS_LAZYTIME},
	"nomand":        {true, unix.MS_MANDLOCK},
	"norelatime":    {true, unix.MS_RELATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"nosuid":        {false, unix.MS_NOSUID},
	"rbind":         {false, unix.MS_BIND | unix.MS_REC},
	"relatime":      {false, unix.MS_RELATIME},
	"remount":       {false, unix.MS_REMOUNT},
	"ro":            {false, unix.MS_RDONLY},
	"rw":            {true, unix.MS_RDONLY},
	"silent":        {false, unix.MS_SILENT},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"suid":          {true, unix.MS_NOSUID},
	"sync":          {false, unix.MS_SYNCHRONOUS},
}

type attrOp struct {
	clear bool
	attr  uint64
}

// recursiveOps are runc's recursive mount options.
var recursiveOps = map[string]attrOp{
	"rro":          {false, unix.MOUNT_ATTR_RDONLY},
	"rrw":          {true, unix.MOUNT_ATTR_RDONLY},
	"rnosuid":      {false, unix.MOUNT_ATTR_NOSUID},
	"rsuid":        {true, unix.MOUNT_ATTR_NOSUID},
	"rnodev":       {false, unix.MOUNT_ATTR_NODEV},
	"rdev":         {true, unix.MOUNT_ATTR_NODEV},
	"rnoexec":      {false, unix.MOUNT_ATTR_NOEXEC},
	"rexec":        {true, unix.MOUNT_ATTR_NOEXEC},
	"rnodiratime":  {false, unix.MOUNT_ATTR_NODIRATIME},
	"rdiratime":    {true, unix.MOUNT_ATTR_NODIRATIME},
	"rnosymfollow": {false, unix.MOUNT_ATTR_NOSYMFOLLOW},
	"rsymfollow":   {true, unix.MOUNT_ATTR_NOSYMFOLLOW},
}

var propagationOps = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// dropped are options that only mean something to a host-side mount helper.
var dropped = map[string]bool{
	"loop": true, "auto": true, "noauto": true, "user": true, "nouser": true,
	"users": true, "nofail": true, "_netdev": true,
}

const mkdirOption = "X-containerd.mkdir.path="

// ParseOptions splits opts into flags, propagation and file system data.
// "loop" sets Loop; other helper-only options are dropped, as are "X-"/"x-"
// options except X-containerd.mkdir.path, which is returned in Mkdirs.
func ParseOptions(opts []string) Options {
	var o Options
	for _, opt := range opts {
		if op, ok := flagOps[opt]; ok {
			if op.clear {
				o.Flags &^= op.flag
			} else {
				o.Flags |= op.flag
			}
			continue
		}
		if p, ok := propagationOps[opt]; ok {
			o.Propagation = p
			continue
		}
		if op, ok := recursiveOps[opt]; ok {
			if op.clear {
				o.RecSet &^= op.attr
				o.RecClear |= op.attr
			} else {
				o.RecClear &^= op.attr
				o.RecSet |= op.attr
			}
			continue
		}
		switch {
		case opt == "loop":
			o.Loop = true
		case opt == "" || dropped[opt]:
		case strings.HasPrefix(opt, mkdirOption):
			o.Mkdirs = append(o.Mkdirs, strings.TrimPrefix(opt, mkdirOption))
		case strings.HasPrefix(opt, "X-"), strings.HasPrefix(opt, "x-"):
		default:
			o.Data = append(o.Data, opt)
		}
	}
	return o
}
