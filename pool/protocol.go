package pool

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/vm"
)

// The claim protocol: one JSON message per packet on a SOCK_SEQPACKET unix
// socket, files passed with SCM_RIGHTS.
//
//	shim → pool  {"op":"claim","claim":{...}}
//	pool → shim  {"error":"..."} (none fits: the shim boots cold), or
//	             {"offer":{...}} with the VM's files
//	shim → pool  {"op":"ack"} once the VM is recorded in the shim's bundle
//	             and runs in the sandbox's host cgroup
//	pool → shim  {} once the pool has forgotten the VM
//
// A connection that ends before the ack destroys the offered VM.
// {"op":"status"} answers what the pool holds.

const (
	opClaim  = "claim"
	opAck    = "ack"
	opStatus = "status"
)

type message struct {
	Op     string        `json:"op,omitempty"`
	Claim  *ClaimRequest `json:"claim,omitempty"`
	Error  string        `json:"error,omitempty"`
	Offer  *Offer        `json:"offer,omitempty"`
	Status *Status       `json:"status,omitempty"`
}

// ClaimRequest asks for a VM.
type ClaimRequest struct {
	// ID names the container the VM is for, in the pool's log.
	ID string `json:"id"`
	// VM is the VM the sandbox would boot.
	VM VMKey `json:"vm"`
}

// Offer describes a claimed VM. Its files come with it, in this order: a
// pidfd per pid, the agent connection, the console FIFO's read end, a copy
// of the share's mount (sharedir.Dir.Clone) and the VM's network
// namespace.
type Offer struct {
	// ID is the pool's name for the VM.
	ID string `json:"id"`
	// Spec is what the VM booted with (its run directory's files, share
	// and NIC); Host is the claimant's to set.
	Spec    vm.Spec `json:"spec"`
	Backend string  `json:"backend"`
	// Pids are the VMM's and its helpers'.
	Pids []int `json:"pids"`
	// Cgroup is the host cgroup the VM runs in until the claimant moves it.
	Cgroup string `json:"cgroup"`
	// RunDir is the VM's run directory, ShareBase its share directory
	// (sharedir.New) and NetNS the file that pinned its network namespace in
	// the pool's mount namespace: the claimant owns all three once it acks.
	RunDir    string `json:"run_dir"`
	ShareBase string `json:"share_base"`
	NetNS     string `json:"netns"`
}

// files is the number of files that come with the offer.
func (o *Offer) files() int { return len(o.Pids) + 4 }

// Status is what the pool holds.
type Status struct {
	// Count is the pool's target size.
	Count int `json:"count"`
	// Ready are the idle VMs; Booting says one is being booted.
	Ready   []Member `json:"ready"`
	Booting *Member  `json:"booting,omitempty"`
	// Claimed counts VMs handed over since the pool started.
	Claimed int `json:"claimed"`
}

// Member is one VM of the pool.
type Member struct {
	ID        string `json:"id"`
	Pid       int    `json:"pid,omitempty"`
	RunDir    string `json:"run_dir"`
	ShareBase string `json:"share_base"`
}

// maxMessage bounds one packet; maxFiles the files that come with it.
const (
	maxMessage = 64 << 10
	maxFiles   = 16
)

func send(c *net.UnixConn, m *message, files ...*os.File) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("warm pool: send: %w", err)
	}
	return nil
}

// recv reads one message and the files that came with it, by deadline.
func recv(c *net.UnixConn, deadline time.Time) (*message, []*os.File, error) {
	if err := c.SetReadDeadline(deadline); err != nil {
		return nil, nil, err
	}
	b, oob := make([]byte, maxMessage), make([]byte, unix.CmsgSpace(4*maxFiles))
	n, oobn, flags, _, err := c.ReadMsgUnix(b, oob)
	if err != nil {
		return nil, nil, fmt.Errorf("warm pool: receive: %w", err)
	}
	files, ferr := parseRights(oob[:oobn])
	switch {
	case ferr != nil:
	case flags&unix.MSG_CTRUNC != 0:
		ferr = errors.New("too many files")
	case flags&unix.MSG_TRUNC != 0:
		ferr = errors.New("message too long")
	case n == 0:
		ferr = errors.New("connection closed")
	}
	var m message
	if ferr == nil {
		ferr = json.Unmarshal(b[:n], &m)
	}
	if ferr != nil {
		closeAll(files)
		return nil, nil, fmt.Errorf("warm pool: receive: %w", ferr)
	}
	return &m, files, nil
}

func parseRights(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for i := range msgs {
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "warm-pool"))
		}
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}
