package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

type entry struct {
	name, body, link string
	typ              byte
}

func makeTar(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644}
		switch e.typ {
		case tar.TypeDir:
			h.Mode = 0o755
		case tar.TypeReg:
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readTar returns the regular files of a tar stream by name.
func readTar(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
}

// testLayers writes two layers: an uncompressed tar and a gzip-compressed one.
func testLayers(t *testing.T, dir string) []string {
	l1 := makeTar(t,
		entry{name: "bin/", typ: tar.TypeDir},
		entry{name: "bin/busybox", typ: tar.TypeReg, body: "#!fake busybox\n"},
		entry{name: "bin/sh", typ: tar.TypeLink, link: "bin/busybox"},
		entry{name: "etc/", typ: tar.TypeDir},
		entry{name: "etc/issue", typ: tar.TypeReg, body: "hello\n"},
	)
	l2 := makeTar(t,
		entry{name: "etc/", typ: tar.TypeDir},
		entry{name: "etc/.wh.issue", typ: tar.TypeReg},
	)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(l2)
	zw.Close()
	p1, p2 := filepath.Join(dir, "l1.tar"), filepath.Join(dir, "l2.tar.gz")
	if err := os.WriteFile(p1, l1, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p2, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{p1, p2}
}

func TestLayoutTarball(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.tar")
	o := &options{
		out:     out,
		name:    "busybox",
		cmd:     []string{"sh", "-c", "echo hi"},
		env:     []string{"FOO=bar"},
		user:    "1000:1000",
		workdir: "/tmp",
		layers:  testLayers(t, dir),
	}
	if err := run(o); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".mkoci-*")); len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}

	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := readTar(t, f)
	if got := string(files["oci-layout"]); !strings.Contains(got, `"imageLayoutVersion":"1.0.0"`) {
		t.Errorf("oci-layout = %q", got)
	}

	var idx v1.IndexManifest
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 {
		t.Fatalf("index.json has %d manifests, want 1", len(idx.Manifests))
	}
	desc := idx.Manifests[0]
	if got := desc.Annotations[annContainerdName]; got != "docker.io/library/busybox:latest" {
		t.Errorf("%s = %q", annContainerdName, got)
	}
	if got := desc.Annotations[annOCIRefName]; got != "latest" {
		t.Errorf("%s = %q", annOCIRefName, got)
	}
	if desc.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("manifest media type %q", desc.MediaType)
	}

	var m v1.Manifest
	if err := json.Unmarshal(files["blobs/sha256/"+desc.Digest.Hex], &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 2 {
		t.Fatalf("manifest has %d layers, want 2", len(m.Layers))
	}
	for _, l := range m.Layers {
		if l.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
			t.Errorf("layer media type %q", l.MediaType)
		}
		if _, ok := files["blobs/sha256/"+l.Digest.Hex]; !ok {
			t.Errorf("layer blob %s missing", l.Digest)
		}
	}
	var cf v1.ConfigFile
	if err := json.Unmarshal(files["blobs/sha256/"+m.Config.Digest.Hex], &cf); err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if !slices.Equal(cf.Config.Cmd, o.cmd) {
		t.Errorf("Cmd = %q, want %q", cf.Config.Cmd, o.cmd)
	}
	if want := []string{defaultPath, "FOO=bar"}; !slices.Equal(cf.Config.Env, want) {
		t.Errorf("Env = %q, want %q", cf.Config.Env, want)
	}
	if cf.Config.User != "1000:1000" || cf.Config.WorkingDir != "/tmp" || cf.Config.Entrypoint != nil {
		t.Errorf("User %q WorkingDir %q Entrypoint %q", cf.Config.User, cf.Config.WorkingDir, cf.Config.Entrypoint)
	}
	if len(cf.RootFS.DiffIDs) != 2 {
		t.Errorf("%d diff_ids, want 2", len(cf.RootFS.DiffIDs))
	}

	// The bottom layer round-trips (hard link included).
	zr, err := gzip.NewReader(bytes.NewReader(files["blobs/sha256/"+m.Layers[0].Digest.Hex]))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(readTar(t, zr)["bin/busybox"]); got != "#!fake busybox\n" {
		t.Errorf("bin/busybox = %q", got)
	}

	// An independent reader agrees on every digest and size.
	ldir := filepath.Join(dir, "layout")
	for n, b := range files {
		p := filepath.Join(ldir, n)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lp, err := layout.FromPath(ldir)
	if err != nil {
		t.Fatal(err)
	}
	img, err := lp.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Errorf("validate: %v", err)
	}

	// Same inputs, same image.
	o2 := *o
	o2.out = filepath.Join(dir, "again.tar")
	if err := run(&o2); err != nil {
		t.Fatal(err)
	}
	b1, _ := os.ReadFile(out)
	b2, _ := os.ReadFile(o2.out)
	if !bytes.Equal(b1, b2) {
		t.Error("two builds from the same inputs differ")
	}
}

func TestPush(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(nilLogger())))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	dir := t.TempDir()
	ref := host + "/e2e-test-images/busybox:1.29-2"
	o := &options{push: []string{ref}, entrypoint: []string{"/bin/sh"}, layers: testLayers(t, dir)}
	if err := run(o); err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Errorf("validate: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/bin/sh"}) {
		t.Errorf("Entrypoint = %q", cf.Config.Entrypoint)
	}
}

func TestRefNames(t *testing.T) {
	for _, tc := range []struct{ in, full, tag string }{
		{"busybox", "docker.io/library/busybox:latest", "latest"},
		{"docker.io/library/debian-ml:test", "docker.io/library/debian-ml:test", "test"},
		{"index.docker.io/foo/bar:1", "docker.io/foo/bar:1", "1"},
		{"registry.k8s.io/pause:3.10.2", "registry.k8s.io/pause:3.10.2", "3.10.2"},
		{"127.0.0.1:5123/e2e-test-images/busybox:1.29-2", "127.0.0.1:5123/e2e-test-images/busybox:1.29-2", "1.29-2"},
	} {
		full, tag, err := refNames(tc.in)
		if err != nil || full != tc.full || tag != tc.tag {
			t.Errorf("refNames(%q) = %q, %q, %v; want %q, %q", tc.in, full, tag, err, tc.full, tc.tag)
		}
	}
	if _, _, err := refNames("busybox@sha256:" + strings.Repeat("0", 64)); err == nil {
		t.Error("a digest reference was accepted")
	}
}

func TestRejectsNonTar(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "junk")
	os.WriteFile(p, bytes.Repeat([]byte("junk"), 200), 0o644)
	err := run(&options{out: filepath.Join(dir, "o.tar"), name: "x", layers: []string{p}})
	if err == nil || !strings.Contains(err.Error(), "not a tar") {
		t.Errorf("err = %v, want 'not a tar'", err)
	}
}

func nilLogger() *log.Logger { return log.New(io.Discard, "", 0) }
