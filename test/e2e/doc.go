// Package e2e holds msb's end-to-end tests: they drive a private containerd
// (hack/containerd-test) with ctr, the way a user does, against
// io.containerd.msb.v1 or, for comparison, io.containerd.runc.v2. The tests
// carry the build tag e2e; see test/README.md for how to run them.
package e2e
