package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// maxSymlinks bounds symlink resolution like the kernel's ELOOP limit.
const maxSymlinks = 40

// SecureJoin resolves path inside root as if root were "/": symlinks are
// followed, absolute ones from root, and ".." never climbs above root.
// Components that do not exist are taken as they are. The result is a path
// under root (on the agent's side), so mounts on it cannot escape.
func SecureJoin(root, path string) (string, error) {
	cur := "/"
	rest := path
	links := 0
	for rest != "" {
		var part string
		part, rest, _ = strings.Cut(rest, "/")
		switch part {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, part)
		fi, err := os.Lstat(filepath.Join(root, next))
		if errors.Is(err, os.ErrNotExist) || (err == nil && fi.Mode()&os.ModeSymlink == 0) {
			cur = next
			continue
		}
		if err != nil {
			return "", fmt.Errorf("resolve %q in %s: %w", path, root, err)
		}
		if links++; links > maxSymlinks {
			return "", fmt.Errorf("resolve %q in %s: %w", path, root, unix.ELOOP)
		}
		dest, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", fmt.Errorf("resolve %q in %s: %w", path, root, err)
		}
		if filepath.IsAbs(dest) {
			cur = "/"
		}
		rest = dest + "/" + rest
	}
	return filepath.Join(root, cur), nil
}
