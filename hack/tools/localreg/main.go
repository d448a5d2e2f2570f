// Command localreg serves an in-memory OCI registry (go-containerregistry's
// pkg/registry) over plain HTTP until it is killed. Push with
// `mkoci -push 127.0.0.1:5123/REPO:TAG ...`; containerd reaches it through a
// hosts.toml mirror (capabilities pull, resolve). Everything is lost on exit.
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"net/http"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5123", "listen address")
	quiet := flag.Bool("q", false, "do not log requests")
	flag.Parse()

	reqLog := log.Default()
	if *quiet {
		reqLog = log.New(io.Discard, "", 0)
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("localreg: serving an in-memory registry on http://%s", l.Addr())
	log.Fatal(http.Serve(l, registry.New(registry.Logger(reqLog))))
}
