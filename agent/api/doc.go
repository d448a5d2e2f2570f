// Package api is the host↔guest protocol of msb: the ttrpc service that
// msb-agent serves inside the VM, and the stream multiplexing that carries
// it and every process's stdio over one virtio-console port.
package api

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative --go-ttrpc_out=. --go-ttrpc_opt=paths=source_relative agent.proto
