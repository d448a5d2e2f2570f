package pool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/msb-runtime/msb/vm"
)

// claimTimeout bounds each answer of the pool.
const claimTimeout = 10 * time.Second

// Claimed is a VM taken from the pool, until Ack still the pool's: Close
// without Ack has the pool destroy it.
type Claimed struct {
	Offer
	// Handover is for vm.Adopt, which takes its files.
	Handover *vm.Handover
	// ShareTree is a copy of the share's mount, for sharedir.Dir.Adopt;
	// NetNSFile holds the VM's network namespace.
	ShareTree, NetNSFile *os.File
	conn                 *net.UnixConn
}

// Claim asks the pool at socket for a VM like req.VM. An error says why
// none is taken: no pool, an empty one, none that fits.
func Claim(ctx context.Context, socket string, req ClaimRequest) (_ *Claimed, retErr error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unixpacket", socket)
	if err != nil {
		return nil, fmt.Errorf("warm pool: %w", err)
	}
	conn := c.(*net.UnixConn)
	defer func() {
		if retErr != nil {
			conn.Close()
		}
	}()
	if err := send(conn, &message{Op: opClaim, Claim: &req}); err != nil {
		return nil, err
	}
	m, files, err := recv(conn, deadline(ctx))
	if err != nil {
		return nil, err
	}
	if m.Error != "" {
		closeAll(files)
		return nil, errors.New(m.Error)
	}
	o := m.Offer
	if o == nil || len(o.Pids) == 0 || len(files) != o.files() {
		closeAll(files)
		return nil, fmt.Errorf("warm pool: an offer of %+v with %d files", o, len(files))
	}
	n := len(o.Pids)
	cl := &Claimed{Offer: *o, conn: conn, ShareTree: files[n+2], NetNSFile: files[n+3]}
	cl.Handover = &vm.Handover{Backend: o.Backend, Pids: o.Pids, PidFDs: files[:n],
		Agent: files[n], Console: files[n+1], Cgroup: o.Cgroup}
	return cl, nil
}

func deadline(ctx context.Context) time.Time {
	d := time.Now().Add(claimTimeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

// Ack tells the pool the VM is the claimant's and waits until the pool
// has forgotten it. An error leaves it unknown whether the pool destroys
// the VM: the claimant must destroy it too.
func (c *Claimed) Ack(ctx context.Context) error {
	if err := send(c.conn, &message{Op: opAck}); err != nil {
		return err
	}
	m, files, err := recv(c.conn, deadline(ctx))
	if err != nil {
		return err
	}
	closeAll(files)
	if m.Error != "" {
		return fmt.Errorf("warm pool: %s", m.Error)
	}
	return nil
}

// Close ends the claim and closes the files nothing took.
func (c *Claimed) Close() {
	c.conn.Close()
	c.Handover.Close()
	closeAll([]*os.File{c.ShareTree, c.NetNSFile})
}

// GetStatus asks the pool at socket what it holds.
func GetStatus(ctx context.Context, socket string) (*Status, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unixpacket", socket)
	if err != nil {
		return nil, fmt.Errorf("warm pool: %w", err)
	}
	defer c.Close()
	conn := c.(*net.UnixConn)
	if err := send(conn, &message{Op: opStatus}); err != nil {
		return nil, err
	}
	m, files, err := recv(conn, deadline(ctx))
	if err != nil {
		return nil, err
	}
	closeAll(files)
	if m.Status == nil {
		return nil, fmt.Errorf("warm pool: no status: %s", m.Error)
	}
	return m.Status, nil
}
