package rootfs

import (
	"bytes"
	"fmt"
	"strings"
	"text/template"
)

// resolveTemplate expands the "format" transform's templates in s exactly as
// containerd v2.4.2 does (core/mount/manager/format.go), with guest mount
// points in place of host ones: points[i] is where mount i is mounted in the
// guest, and only mounts before the one being formatted are in points.
//
//   - {{ mount i }} is points[i];
//   - {{ overlay a b }} joins points[a..b] with ':' in ascending order when
//     a <= b and in descending order (a, a-1, ..., b) when a > b;
//   - out-of-range indexes are errors, as in containerd;
//   - {{ source i }} and {{ target i }} are the host source and target of an
//     active mount: nothing a VM can use, so they are refused.
//
// It uses text/template like containerd, so the syntax accepted is the same.
func resolveTemplate(s string, points []string) (string, error) {
	if !strings.Contains(s, templateMark) {
		return s, nil
	}
	oob := func(i int) error {
		return fmt.Errorf("index out of bounds: %d, has %d active mounts", i, len(points))
	}
	fm := template.FuncMap{
		"mount": func(i int) (string, error) {
			if i < 0 || i >= len(points) {
				return "", oob(i)
			}
			return points[i], nil
		},
		"overlay": func(start, end int) (string, error) {
			var dirs []string
			if start > end {
				if start >= len(points) || end < 0 {
					return "", fmt.Errorf("invalid range: %d-%d, has %d active mounts", start, end, len(points))
				}
				for i := start; i >= end; i-- {
					dirs = append(dirs, points[i])
				}
			} else {
				if start < 0 || end >= len(points) {
					return "", fmt.Errorf("invalid range: %d-%d, has %d active mounts", start, end, len(points))
				}
				for i := start; i <= end; i++ {
					dirs = append(dirs, points[i])
				}
			}
			return strings.Join(dirs, ":"), nil
		},
		"source": func(int) (string, error) {
			return "", fmt.Errorf("{{ source }} names a host path, which a VM cannot mount")
		},
		"target": func(int) (string, error) {
			return "", fmt.Errorf("{{ target }} names a host path, which a VM cannot mount")
		},
	}
	t, err := template.New("").Funcs(fm).Parse(s)
	if err != nil {
		return "", fmt.Errorf("template %q: %w", s, err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, nil); err != nil {
		return "", fmt.Errorf("template %q: %w", s, err)
	}
	return buf.String(), nil
}
