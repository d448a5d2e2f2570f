package main

import (
	"archive/tar"
	"bufio"
	"bytes"

	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

const (
	annContainerdName = "io.containerd.image.name"
	annOCIRefName     = "org.opencontainers.image.ref.name"
	defaultPath       = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

type options struct {
	out, name     string
	cmd           []string
	entrypoint    []string
	env           []string
	user, workdir string
	push          []string
	layers        []string // bottom first
}

// build assembles the image. cleanup removes the temporary compressed layers;
// call it only when the image is no longer used.
func build(o *options) (v1.Image, func(), error) {
	tmp, err := os.MkdirTemp(tmpDirFor(o.out), ".mkoci-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(tmp) }

	layers := make([]v1.Layer, len(o.layers))
	errs := make([]error, len(o.layers))
	var wg sync.WaitGroup
	for i, p := range o.layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			layers[i], errs[i] = prepareLayer(p, filepath.Join(tmp, fmt.Sprintf("layer%d.tar.gz", i)))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			cleanup()
			return nil, nil, err
		}
	}

	created := time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		created = time.Unix(sec, 0).UTC()
	}

	adds := make([]mutate.Addendum, len(layers))
	for i, l := range layers {
		adds[i] = mutate.Addendum{
			Layer:     l,
			MediaType: types.OCILayer,
			History: v1.History{
				Created:   v1.Time{Time: created},
				CreatedBy: "mkoci " + filepath.Base(o.layers[i]),
			},
		}
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, adds...)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: created}
	cf.Config = v1.Config{
		Cmd:        o.cmd,
		Entrypoint: o.entrypoint,
		Env:        withDefaultPath(o.env),
		User:       o.user,
		WorkingDir: o.workdir,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return img, cleanup, nil
}

func tmpDirFor(out string) string {
	if out != "" {
		return filepath.Dir(out)
	}
	return ""
}

func withDefaultPath(env []string) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			return env
		}
	}
	return append([]string{defaultPath}, env...)
}

// fileLayer is a gzip-compressed layer on disk whose digests are known.
type fileLayer struct {
	path           string
	digest, diffID v1.Hash
	size           int64
}

func (l *fileLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *fileLayer) Size() (int64, error)                { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		f.Close()
		return nil, err
	}
	return &readCloser{Reader: zr, close: func() error { zr.Close(); return f.Close() }}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r *readCloser) Close() error { return r.close() }

func sha(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

// prepareLayer gzips src into tmp (one pass, computing diffID and digest), or
// uses src directly if it is already gzip-compressed.
func prepareLayer(src, tmp string) (v1.Layer, error) {
	f, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	magic, _ := br.Peek(2)
	if bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		dh, uh := sha256.New(), sha256.New()
		zr, err := gzip.NewReader(io.TeeReader(br, dh))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		if _, err := io.Copy(uh, zr); err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		if _, err := io.Copy(dh, br); err != nil { // trailing bytes count in the digest
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			return nil, err
		}
		return &fileLayer{path: src, digest: sha(dh), diffID: sha(uh), size: st.Size()}, nil
	}
	if err := checkTar(br); err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}

	out, err := os.Create(tmp)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	dh, uh := sha256.New(), sha256.New()
	cw := &countWriter{w: io.MultiWriter(out, dh)}
	bw := bufio.NewWriterSize(cw, 1<<20)
	zw, err := gzip.NewWriterLevel(bw, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(zw, io.TeeReader(br, uh)); err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	if err := out.Close(); err != nil {
		return nil, err
	}
	return &fileLayer{path: tmp, digest: sha(dh), diffID: sha(uh), size: cw.n}, nil
}

// checkTar catches obvious mistakes (wrong file, zstd, ...) early.
func checkTar(br *bufio.Reader) error {
	hdr, err := br.Peek(512)
	if err != nil {
		return fmt.Errorf("not a tar archive (%d bytes)", len(hdr))
	}
	if bytes.Equal(hdr, make([]byte, 512)) { // empty archive: end-of-archive blocks only
		return nil
	}
	if _, err := tar.NewReader(bytes.NewReader(hdr)).Next(); err != nil && err != io.ErrUnexpectedEOF {
		return fmt.Errorf("not a tar archive: %v", err)
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// refNames returns the full reference (docker.io/library/busybox:latest) and
// the tag (latest) for -name.
func refNames(ref string) (full, tag string, err error) {
	t, err := name.NewTag(ref, name.WithDefaultRegistry("docker.io"))
	if err != nil {
		return "", "", fmt.Errorf("-name %q: %w", ref, err)
	}
	reg := t.RegistryStr()
	if reg == name.DefaultRegistry { // index.docker.io
		reg = "docker.io"
	}
	return reg + "/" + t.RepositoryStr() + ":" + t.TagStr(), t.TagStr(), nil
}

// writeLayoutFile writes the layout tarball atomically (via OUT.tmp + rename).
func writeLayoutFile(out string, img v1.Image, ref string) error {
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := writeLayout(bw, img, ref); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// writeLayout writes an OCI image layout (oci-layout, index.json, blobs/sha256/*)
// as a tar stream.
func writeLayout(w io.Writer, img v1.Image, ref string) error {
	full, tag, err := refNames(ref)
	if err != nil {
		return err
	}
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	mdig, err := img.Digest()
	if err != nil {
		return err
	}
	mt, err := img.MediaType()
	if err != nil {
		return err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	cdig, err := img.ConfigName()
	if err != nil {
		return err
	}
	index := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: mt,
			Size:      int64(len(manifest)),
			Digest:    mdig,
			Platform:  &v1.Platform{Architecture: "amd64", OS: "linux"},
			Annotations: map[string]string{
				annContainerdName: full,
				annOCIRefName:     tag,
			},
		}},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	mtime := time.Unix(0, 0)
	dir := func(n string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: n, Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX})
	}
	file := func(n string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: size, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	blob := func(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
	layout := []byte(`{"imageLayoutVersion":"1.0.0"}`)
	if err := file("oci-layout", int64(len(layout)), bytes.NewReader(layout)); err != nil {
		return err
	}
	if err := file("index.json", int64(len(indexJSON)), bytes.NewReader(indexJSON)); err != nil {
		return err
	}
	if err := dir("blobs/"); err != nil {
		return err
	}
	if err := dir("blobs/sha256/"); err != nil {
		return err
	}
	if err := file(blob(mdig), int64(len(manifest)), bytes.NewReader(manifest)); err != nil {
		return err
	}
	if err := file(blob(cdig), int64(len(config)), bytes.NewReader(config)); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	seen := map[v1.Hash]bool{}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		if seen[d] { // the same layer twice: one blob
			continue
		}
		seen[d] = true
		size, err := l.Size()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		err = file(blob(d), size, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer %s: %w", d, err)
		}
	}
	return tw.Close()
}

// push writes the image to ref; registries on localhost/127.0.0.1 (and, with
// name.Insecure, any other host) are spoken to over plain HTTP.
func push(img v1.Image, ref string) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return fmt.Errorf("-push %q: %w", ref, err)
	}
	if err := remote.Write(r, img); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}
