// Command mkoci turns layer tarballs into an OCI image and writes it as an
// OCI image-layout tarball that `ctr images import` accepts without flags,
// and/or pushes it to a plain-HTTP registry (see hack/tools/localreg).
//
//	mkoci -o OUT.tar -name REF [-cmd ARG]... [-entrypoint ARG]... [-env K=V]...
//	      [-user U] [-workdir D] [-push REF]... LAYER.tar...
//
// Layers are given bottom first. Uncompressed layer tars are gzip-compressed
// (klauspost/compress gzip, level 6, no timestamp: deterministic); already gzip-compressed layers are
// used as they are. The config is linux/amd64 with a fixed creation time
// (SOURCE_DATE_EPOCH, or the Unix epoch), so the same inputs always give the
// same image digest. index.json carries both io.containerd.image.name (the full
// reference) and org.opencontainers.image.ref.name (the tag).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func usage() {
	fmt.Fprintf(flag.CommandLine.Output(), `usage: mkoci -o OUT.tar -name REF [options] LAYER.tar...
       mkoci -push REF [-name REF] [options] LAYER.tar...

Builds a linux/amd64 OCI image from layer tars (bottom layer first) and writes it
as an OCI image-layout tarball (import: ctr images import OUT.tar) and/or pushes
it to a plain-HTTP registry. Repeatable flags: -cmd -entrypoint -env -push.
Pass -cmd/-entrypoint once per argv element (-cmd sh -cmd -c -cmd 'echo hi').

`)
	flag.PrintDefaults()
}

func main() {
	var o options
	var cmd, ep, env, push multiFlag
	flag.StringVar(&o.out, "o", "", "write an OCI image-layout tarball to this file")
	flag.StringVar(&o.name, "name", "", "image reference recorded in index.json (e.g. docker.io/library/busybox:latest)")
	flag.Var(&cmd, "cmd", "append an element to the config's Cmd (repeatable)")
	flag.Var(&ep, "entrypoint", "append an element to the config's Entrypoint (repeatable)")
	flag.Var(&env, "env", "add K=V to the config's Env (repeatable; PATH defaults to the usual Linux PATH)")
	flag.StringVar(&o.user, "user", "", "config User (uid, name, uid:gid, ...)")
	flag.StringVar(&o.workdir, "workdir", "", "config WorkingDir")
	flag.Var(&push, "push", "also push the image to this reference over plain HTTP (repeatable)")
	flag.Usage = usage
	flag.Parse()
	o.cmd, o.entrypoint, o.env, o.push, o.layers = cmd, ep, env, push, flag.Args()

	if err := run(&o); err != nil {
		fmt.Fprintln(os.Stderr, "mkoci:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

func run(o *options) error {
	if o.out == "" && len(o.push) == 0 {
		return usageError{errors.New("need -o OUT.tar and/or -push REF")}
	}
	if o.out != "" && o.name == "" {
		return usageError{errors.New("-o needs -name REF")}
	}
	if len(o.layers) == 0 {
		return usageError{errors.New("need at least one LAYER.tar")}
	}
	img, cleanup, err := build(o)
	if err != nil {
		return err
	}
	defer cleanup()
	if o.out != "" {
		if err := writeLayoutFile(o.out, img, o.name); err != nil {
			return err
		}
	}
	for _, ref := range o.push {
		if err := push(img, ref); err != nil {
			return err
		}
	}
	return nil
}
