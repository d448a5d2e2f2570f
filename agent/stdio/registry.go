// Package stdio keeps the stdio streams the host opens for processes until
// StartProcess claims them. The host opens them before it calls
// StartProcess, but streams and calls travel independently, so either may
// arrive first.
package stdio

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/msb-runtime/msb/agent/api"
)

// Key names one stream: a process and a descriptor.
type Key struct {
	Container string
	Exec      string
	FD        int
}

func (k Key) String() string {
	names := [...]string{"stdin", "stdout", "stderr"}
	fd := fmt.Sprint(k.FD)
	if k.FD >= 0 && k.FD < len(names) {
		fd = names[k.FD]
	}
	return fmt.Sprintf("%s stream of %s/%s", fd, k.Container, k.Exec)
}

// Registry holds arrived, unclaimed streams.
type Registry struct {
	mu      sync.Mutex
	streams map[Key]net.Conn
	changed chan struct{} // closed and replaced on every Put
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{streams: map[Key]net.Conn{}, changed: make(chan struct{})}
}

// Put stores a stream the host opened; a stream already stored under the
// same key is closed and replaced. It has api.StdioHandler's signature.
func (r *Registry) Put(h api.StdioHeader, c net.Conn) {
	k := Key{h.ContainerID, h.ExecID, h.FD}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := r.streams[k]; old != nil {
		old.Close()
	}
	r.streams[k] = c
	close(r.changed)
	r.changed = make(chan struct{})
}

// Take waits until the streams of fds for container/exec have all arrived,
// removes and returns them (indexed by fd). Streams of that process under
// other fds are closed: the host did not declare them. On timeout or
// cancellation, the streams that did arrive are closed too.
func (r *Registry) Take(ctx context.Context, container, exec string, fds []int, timeout time.Duration) (map[int]net.Conn, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		missing := r.missing(container, exec, fds)
		if missing == nil {
			got := r.remove(container, exec, fds)
			r.mu.Unlock()
			return got, nil
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			r.Drop(container, exec)
			return nil, fmt.Errorf("%s not opened within %v: %w", missing, timeout, context.DeadlineExceeded)
		case <-ctx.Done():
			r.Drop(container, exec)
			return nil, fmt.Errorf("waiting for %s: %w", missing, ctx.Err())
		}
	}
}

// missing returns the first key of fds not yet arrived, or nil.
func (r *Registry) missing(container, exec string, fds []int) *Key {
	for _, fd := range fds {
		k := Key{container, exec, fd}
		if r.streams[k] == nil {
			return &k
		}
	}
	return nil
}

func (r *Registry) remove(container, exec string, fds []int) map[int]net.Conn {
	got := map[int]net.Conn{}
	for _, fd := range fds {
		k := Key{container, exec, fd}
		got[fd] = r.streams[k]
		delete(r.streams, k)
	}
	for k, c := range r.streams {
		if k.Container == container && k.Exec == exec {
			c.Close()
			delete(r.streams, k)
		}
	}
	return got
}

// Drop closes and forgets the unclaimed streams of one process.
func (r *Registry) Drop(container, exec string) {
	r.drop(func(k Key) bool { return k.Container == container && k.Exec == exec })
}

// DropContainer closes and forgets every unclaimed stream of a container.
func (r *Registry) DropContainer(container string) {
	r.drop(func(k Key) bool { return k.Container == container })
}

func (r *Registry) drop(match func(Key) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, c := range r.streams {
		if match(k) {
			c.Close()
			delete(r.streams, k)
		}
	}
}

// Len is the number of unclaimed streams.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.streams)
}
