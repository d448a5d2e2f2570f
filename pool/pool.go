package pool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/log"

	"github.com/msb-runtime/msb/vm"
)

// warmVM is a booted VM of the pool (vm.Warm).
type warmVM interface {
	Pid() int
	Done() <-chan struct{}
	Err() error
	Kill()
	Handover() (*vm.Handover, error)
	Release() error
}

// resources are what a pooled VM holds besides its processes.
type resources interface {
	// files are a copy of the share's mount and the network namespace,
	// which come with an offer.
	files() ([]*os.File, error)
	// claimed records that the claimant owns the VM: a restarted pool
	// must not destroy it. It comes before the claimant is told.
	claimed() error
	// forget then drops the pool's hold on them, and with release on the
	// VM.
	forget(release func() error) error
	// destroy removes them, once the VM is killed.
	destroy() error
}

// member is one VM of the pool.
type member struct {
	Member
	offer Offer
	vm    warmVM
	res   resources
}

func (m *member) destroy() {
	m.vm.Kill()
	if err := m.res.destroy(); err != nil {
		log.L.WithError(err).WithField("vm", m.ID).Warn("warm pool: cleanup")
	}
}

// booter boots the member id.
type booter func(ctx context.Context, id string) (*member, error)

// Pool keeps Config.Count VMs booted and serves claims for them.
type Pool struct {
	cfg  Config
	key  VMKey
	boot booter

	mu      sync.Mutex
	ready   []*member
	booting *Member
	claimed int
	closed  bool
	wake    chan struct{}
}

func newPool(cfg Config, key VMKey, boot booter) *Pool {
	return &Pool{cfg: cfg, key: key, boot: boot, wake: make(chan struct{}, 1)}
}

// New makes a pool of real VMs, booted by h.
func New(cfg Config, h *Host) *Pool { return newPool(cfg, h.Key, h.boot) }

// newID names a VM of the pool.
func newID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Paths of member id.
func runDir(id string) string    { return filepath.Join(Root, "vm", id) }
func shareBase(id string) string { return filepath.Join(Root, "share", id) }

func memberOf(id string) Member {
	return Member{ID: id, RunDir: runDir(id), ShareBase: shareBase(id)}
}

// Run keeps the pool filled and serves claims on ln until ctx ends; then
// it destroys the idle VMs. A claim in flight finishes first.
func (p *Pool) Run(ctx context.Context, ln *net.UnixListener) error {
	var wg sync.WaitGroup
	wg.Go(func() { p.refill(ctx) })
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var err error
	for {
		conn, aerr := ln.AcceptUnix()
		if aerr != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("warm pool: accept: %w", aerr)
			}
			break
		}
		wg.Go(func() { p.handle(ctx, conn) })
	}
	wg.Wait()
	p.mu.Lock()
	p.closed = true
	idle := p.ready
	p.ready = nil
	p.mu.Unlock()
	for _, m := range idle {
		m.destroy()
	}
	return err
}

// short says whether the pool lacks a VM.
func (p *Pool) short() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.closed && len(p.ready) < p.cfg.Count
}

func (p *Pool) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// refill boots one VM after the other while the pool lacks some, backing
// off after failures.
func (p *Pool) refill(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		if !p.short() {
			select {
			case <-p.wake:
			case <-ctx.Done():
			}
			continue
		}
		m, err := p.bootOne(ctx)
		if err != nil {
			failures++
			wait := min(time.Duration(1<<min(failures, 6))*time.Second, time.Minute)
			log.G(ctx).WithError(err).Errorf("warm pool: boot failed (%d in a row); next try in %s", failures, wait)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
			continue
		}
		failures = 0
		if !p.add(m) {
			m.destroy()
			continue
		}
		go p.watch(m)
	}
}

func (p *Pool) bootOne(ctx context.Context) (*member, error) {
	id := newID()
	b := memberOf(id)
	p.mu.Lock()
	p.booting = &b
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.booting = nil
		p.mu.Unlock()
	}()
	t0 := time.Now()
	m, err := p.boot(ctx, id)
	if err == nil {
		log.G(ctx).WithField("vm", id).WithField("vmm_pid", m.vm.Pid()).
			Infof("warm pool: VM ready in %s", time.Since(t0).Round(time.Millisecond))
	}
	return m, err
}

func (p *Pool) add(m *member) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.ready = append(p.ready, m)
	return true
}

// remove takes m out of the idle VMs; false when it was not there (it is
// being claimed).
func (p *Pool) remove(m *member) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, r := range p.ready {
		if r == m {
			p.ready = append(p.ready[:i], p.ready[i+1:]...)
			return true
		}
	}
	return false
}

// watch replaces an idle VM that ended.
func (p *Pool) watch(m *member) {
	<-m.vm.Done()
	if !p.remove(m) {
		return
	}
	log.L.WithError(m.vm.Err()).WithField("vm", m.ID).Warn("warm pool: an idle VM ended; replacing it")
	m.destroy()
	p.kick()
}

// errNoFit starts the reasons a claim gets no VM.
var errNoFit = errors.New("no warm VM")

// take hands out the oldest idle VM that still runs, if the claim fits;
// it is no longer the pool's to hand out.
func (p *Pool) take(key VMKey) (*member, error) {
	if why := key.mismatch(p.key); why != "" {
		return nil, fmt.Errorf("%w fits: %s", errNoFit, why)
	}
	defer p.kick()
	for {
		p.mu.Lock()
		if len(p.ready) == 0 {
			p.mu.Unlock()
			return nil, fmt.Errorf("%w: the pool is empty", errNoFit)
		}
		m := p.ready[0]
		p.ready = p.ready[1:]
		p.mu.Unlock()
		select {
		case <-m.vm.Done():
			m.destroy() // watch finds it gone
		default:
			return m, nil
		}
	}
}

func (p *Pool) status() *Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := &Status{Count: p.cfg.Count, Claimed: p.claimed, Ready: []Member{}}
	for _, m := range p.ready {
		s.Ready = append(s.Ready, m.Member)
	}
	if p.booting != nil {
		b := *p.booting
		s.Booting = &b
	}
	return s
}
