package rootfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
)

func TestEnsureExt4(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	img := filepath.Join(dir, "rwlayer.img")
	spec := mkfsSpec{fs: "ext4", size: 64 << 20}

	created, err := ensureExt4(ctx, img, spec, "")
	if err != nil || !created {
		t.Fatalf("create: %v, %v", created, err)
	}
	st, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != 64<<20 {
		t.Errorf("size %d, want %d", st.Size(), 64<<20)
	}
	if used := st.Sys().(*syscall.Stat_t).Blocks * 512; used >= st.Size()/2 {
		t.Errorf("image is not sparse: %d of %d bytes allocated", used, st.Size())
	}
	if err := checkExtImage(img); err != nil {
		t.Error(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}

	// An existing image is kept as it is.
	f, _ := os.OpenFile(img, os.O_WRONLY, 0)
	f.WriteAt([]byte("marker"), 32<<20)
	f.Close()
	before, _ := os.Stat(img)
	created, err = ensureExt4(ctx, img, mkfsSpec{fs: "ext4", size: 128 << 20}, "/nonexistent/mkfs")
	if err != nil || created {
		t.Fatalf("existing: %v, %v", created, err)
	}
	after, _ := os.Stat(img)
	b := make([]byte, 6)
	f, _ = os.Open(img)
	f.ReadAt(b, 32<<20)
	f.Close()
	if string(b) != "marker" || after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("existing image was changed")
	}

	// An existing file that is no ext4 image is refused and left alone.
	junk := filepath.Join(dir, "junk.img")
	os.WriteFile(junk, make([]byte, 4096), 0o640)
	if _, err := ensureExt4(ctx, junk, spec, ""); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "no ext4") {
		t.Errorf("junk image: %v", err)
	}
	if _, err := os.Stat(junk); err != nil {
		t.Errorf("junk image removed: %v", err)
	}

	// A failing mkfs.ext4 leaves nothing behind.
	failed := filepath.Join(dir, "failed.img")
	if _, err := ensureExt4(ctx, failed, spec, "/bin/false"); err == nil || !strings.Contains(err.Error(), "/bin/false") {
		t.Errorf("failing mkfs: %v", err)
	}
	if _, err := os.Stat(failed); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failing mkfs left %s: %v", failed, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("temporary files left: %v", entries)
	}

	// Too small, and a UUID.
	if _, err := ensureExt4(ctx, filepath.Join(dir, "tiny.img"), mkfsSpec{fs: "ext4", size: 4096}, ""); !errdefs.IsInvalidArgument(err) {
		t.Errorf("tiny image: %v", err)
	}
	withUUID := filepath.Join(dir, "uuid.img")
	if _, err := ensureExt4(ctx, withUUID, mkfsSpec{fs: "ext4", size: 8 << 20, uuid: "0f4a7a0e-6a8e-4c55-9d7b-1f2c3d4e5f60"}, ""); err != nil {
		t.Errorf("uuid: %v", err)
	}
	sb := make([]byte, 16)
	f, _ = os.Open(withUUID)
	f.ReadAt(sb, 1024+104) // s_uuid
	f.Close()
	if sb[0] != 0x0f || sb[1] != 0x4a {
		t.Errorf("uuid not applied: % x", sb)
	}
}
