package pool

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// ackTimeout bounds how long a claimant may take to adopt the VM offered.
const ackTimeout = 60 * time.Second

// handle serves one connection: a status request or a claim.
func (p *Pool) handle(ctx context.Context, conn *net.UnixConn) {
	defer conn.Close()
	if err := checkPeer(conn); err != nil {
		log.G(ctx).WithError(err).Warn("warm pool: connection refused")
		return
	}
	m, files, err := recv(conn, time.Now().Add(claimTimeout))
	closeAll(files)
	if err != nil {
		log.G(ctx).WithError(err).Debug("warm pool: request")
		return
	}
	switch {
	case m.Op == opStatus:
		_ = send(conn, &message{Status: p.status()})
	case m.Op == opClaim && m.Claim != nil:
		p.claim(ctx, conn, m.Claim)
	default:
		_ = send(conn, &message{Error: fmt.Sprintf("warm pool: unknown request %q", m.Op)})
	}
}

// checkPeer admits only root (the socket is root's alone as well).
func checkPeer(conn *net.UnixConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return cerr
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Getuid() {
		return fmt.Errorf("peer pid %d runs as uid %d", cred.Pid, cred.Uid)
	}
	return nil
}

// claim offers an idle VM that fits and hands it over once acknowledged;
// otherwise it destroys it: a VM is handed out once, whatever happens.
func (p *Pool) claim(ctx context.Context, conn *net.UnixConn, req *ClaimRequest) {
	lg := log.G(ctx).WithField("container", req.ID)
	m, err := p.take(req.VM)
	if err != nil {
		_ = send(conn, &message{Error: err.Error()})
		return
	}
	lg = lg.WithField("vm", m.ID)
	if err := p.offer(conn, m); err != nil {
		lg.WithError(err).Warn("warm pool: claim failed; VM destroyed")
		_ = send(conn, &message{Error: fmt.Sprintf("warm pool: %v", err)})
		m.destroy()
		return
	}
	ack, files, err := recv(conn, time.Now().Add(ackTimeout))
	closeAll(files)
	if err == nil && ack.Op != opAck {
		err = fmt.Errorf("got %q, want an ack", ack.Op)
	}
	if err != nil {
		lg.WithError(err).Warn("warm pool: the claim was not acknowledged; VM destroyed")
		m.destroy()
		return
	}
	if err := m.res.claimed(); err != nil {
		lg.WithError(err).Warn("warm pool: the claimed VM's record; VM destroyed")
		_ = send(conn, &message{Error: fmt.Sprintf("warm pool: %v", err)})
		m.destroy()
		return
	}
	p.mu.Lock()
	p.claimed++
	p.mu.Unlock()
	// The claimant goes on at once; what the pool lets go of does not
	// concern it (its copy of the share is a peer of the pool's until the
	// pool's leaves the group).
	_ = send(conn, &message{})
	if err := m.res.forget(m.vm.Release); err != nil {
		lg.WithError(err).Warn("warm pool: forget the claimed VM")
	}
	lg.Info("warm pool: VM claimed")
}

// offer sends m and its files.
func (p *Pool) offer(conn *net.UnixConn, m *member) error {
	h, err := m.vm.Handover()
	if err != nil {
		return fmt.Errorf("hand over: %w", err)
	}
	defer h.Close()
	extra, err := m.res.files()
	if err != nil {
		return fmt.Errorf("hand over: %w", err)
	}
	defer closeAll(extra)
	o := m.offer
	o.Pids, o.Backend, o.Cgroup = h.Pids, h.Backend, h.Cgroup
	files := append(append(h.PidFDs, h.Agent, h.Console), extra...)
	if len(files) != o.files() {
		return fmt.Errorf("hand over: %d files, want %d", len(files), o.files())
	}
	return send(conn, &message{Offer: &o}, files...)
}
