package pool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/vm"
)

// fakeVM stands in for a booted VM: a sleeping process, so that pidfds,
// kills and ends are real.
type fakeVM struct {
	cmd      *exec.Cmd
	done     chan struct{}
	mu       sync.Mutex
	killed   bool
	released bool
}

func newFakeVM(t *testing.T) *fakeVM {
	v := &fakeVM{cmd: exec.Command("sleep", "infinity"), done: make(chan struct{})}
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = v.cmd.Wait(); close(v.done) }()
	return v
}

func (v *fakeVM) Pid() int              { return v.cmd.Process.Pid }
func (v *fakeVM) Done() <-chan struct{} { return v.done }
func (v *fakeVM) Err() error            { return errors.New("ended") }
func (v *fakeVM) Kill() {
	v.mu.Lock()
	v.killed = true
	v.mu.Unlock()
	_ = v.cmd.Process.Kill()
	<-v.done
}

func (v *fakeVM) Release() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.released = true
	return nil
}

func (v *fakeVM) state() (killed, released bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.killed, v.released
}

func (v *fakeVM) Handover() (*vm.Handover, error) {
	fd, err := unix.PidfdOpen(v.Pid(), unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	unix.Close(fds[1])
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	w.Close()
	return &vm.Handover{Backend: "fake", Pids: []int{v.Pid()}, PidFDs: []*os.File{os.NewFile(uintptr(fd), "pidfd")},
		Agent: os.NewFile(uintptr(fds[0]), "agent"), Console: r, Cgroup: "/fake"}, nil
}

type fakeRes struct {
	mu                  sync.Mutex
	forgotten, destroys int
}

func (r *fakeRes) files() ([]*os.File, error) {
	var out []*os.File
	for range 2 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

func (r *fakeRes) claimed() error { return nil }

func (r *fakeRes) forget(release func() error) error {
	r.mu.Lock()
	r.forgotten++
	r.mu.Unlock()
	return release()
}

func (r *fakeRes) destroy() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.destroys++
	return nil
}

func (r *fakeRes) counts() (forgotten, destroys int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.forgotten, r.destroys
}

func resOf(m *member) *fakeRes { return m.res.(*fakeRes) }

// fakePool runs a pool of fake VMs on a socket in a temporary directory.
type fakePool struct {
	p      *Pool
	socket string
	mu     sync.Mutex
	booted map[string]*member
	gate   chan struct{} // when set, each boot waits for a value
}

var testKey = VMKey{VCPUs: 1, MemoryMiB: 256, Backend: "auto", BootDisk: "/boot.erofs"}

func startFakePool(t *testing.T, count int, gate chan struct{}) *fakePool {
	t.Helper()
	f := &fakePool{booted: map[string]*member{}, gate: gate}
	f.p = newPool(Config{Count: count}, testKey, func(ctx context.Context, id string) (*member, error) {
		if f.gate != nil {
			select {
			case <-f.gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		m := &member{Member: memberOf(id), vm: newFakeVM(t), res: &fakeRes{}}
		m.Pid = m.vm.Pid()
		m.offer = Offer{ID: id, RunDir: m.RunDir, ShareBase: m.ShareBase}
		f.mu.Lock()
		f.booted[id] = m
		f.mu.Unlock()
		return m, nil
	})
	f.socket = filepath.Join(t.TempDir(), "pool.sock")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: f.socket, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.p.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, m := range f.booted {
			_ = m.vm.(*fakeVM).cmd.Process.Kill()
		}
	})
	return f
}

func (f *fakePool) member(id string) *member {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.booted[id]
}

// waitReady waits until the pool holds n idle VMs and returns them.
func (f *fakePool) waitReady(t *testing.T, n int) []Member {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := GetStatus(context.Background(), f.socket)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Ready) == n {
			return st.Ready
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pool holds %d idle VMs, want %d", len(st.Ready), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func claim(t *testing.T, f *fakePool) (*Claimed, error) {
	t.Helper()
	return Claim(context.Background(), f.socket, ClaimRequest{ID: "c1", VM: testKey})
}

// A claim gets the oldest idle VM with its files; once acknowledged the
// pool has let go of it, and boots another.
func TestClaimAck(t *testing.T) {
	f := startFakePool(t, 2, nil)
	ready := f.waitReady(t, 2)
	c, err := claim(t, f)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.ID != ready[0].ID || c.RunDir != ready[0].RunDir {
		t.Errorf("claimed %s, want the oldest idle VM %s", c.ID, ready[0].ID)
	}
	m := f.member(c.ID)
	h := c.Handover
	if len(h.PidFDs) != 1 || h.Pids[0] != m.vm.Pid() || h.Agent == nil || h.Console == nil || c.ShareTree == nil || c.NetNSFile == nil {
		t.Fatalf("offer: %+v, share %v, netns %v", h, c.ShareTree, c.NetNSFile)
	}
	// The pidfd names the VMM: a signal through it reaches it.
	if err := unix.PidfdSendSignal(int(h.PidFDs[0].Fd()), 0, nil, 0); err != nil {
		t.Errorf("signal through the pidfd: %v", err)
	}
	if err := c.Ack(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The pool lets go of the VM once it answered the ack.
	deadline := time.Now().Add(10 * time.Second)
	for {
		forgotten, _ := resOf(m).counts()
		killed, released := m.vm.(*fakeVM).state()
		if killed {
			t.Fatal("the pool killed the VM it handed over")
		}
		if released && forgotten == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the ack: released %v, forgotten %d", released, forgotten)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, r := range f.waitReady(t, 2) {
		if r.ID == c.ID {
			t.Errorf("the claimed VM %s is idle in the pool again", c.ID)
		}
	}
	st, err := GetStatus(context.Background(), f.socket)
	if err != nil || st.Claimed != 1 {
		t.Errorf("status %+v, %v: want 1 claimed", st, err)
	}
}

// A claim that is not acknowledged destroys the VM, which no one else
// gets.
func TestClaimNotAcked(t *testing.T) {
	f := startFakePool(t, 1, nil)
	f.waitReady(t, 1)
	c, err := claim(t, f)
	if err != nil {
		t.Fatal(err)
	}
	id := c.ID
	c.Close()
	m := f.member(id)
	deadline := time.Now().Add(10 * time.Second)
	for {
		killed, released := m.vm.(*fakeVM).state()
		if _, destroys := resOf(m).counts(); killed && !released && destroys == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unacknowledged claim: killed %v, released %v", killed, released)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r := f.waitReady(t, 1); r[0].ID == id {
		t.Errorf("the destroyed VM %s is in the pool again", id)
	}
}

// Claims that find no VM, or none that fits, say why.
func TestClaimRefused(t *testing.T) {
	gate := make(chan struct{})
	f := startFakePool(t, 1, gate)
	if _, err := claim(t, f); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("claim from an empty pool: %v", err)
	}
	gate <- struct{}{}
	f.waitReady(t, 1)
	big := testKey
	big.MemoryMiB = 512
	_, err := Claim(context.Background(), f.socket, ClaimRequest{ID: "big", VM: big})
	if err == nil || !strings.Contains(err.Error(), "512") {
		t.Errorf("a claim for another size: %v", err)
	}
	other := testKey
	other.KernelArgs = []string{"quiet"}
	if _, err := Claim(context.Background(), f.socket, ClaimRequest{ID: "args", VM: other}); err == nil {
		t.Error("a claim for other kernel arguments got a VM")
	}
	f.waitReady(t, 1) // untouched
}

// Concurrent claims never get the same VM; each VM goes to one claimant.
func TestClaimsNeverShareAVM(t *testing.T) {
	gate := make(chan struct{}, 100)
	f := startFakePool(t, 3, gate)
	for range 3 {
		gate <- struct{}{}
	}
	f.waitReady(t, 3)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[string]int{}
		pids = map[int]int{}
		errs []error
	)
	for i := range 6 {
		wg.Go(func() {
			c, err := Claim(context.Background(), f.socket, ClaimRequest{ID: fmt.Sprint("c", i), VM: testKey})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			defer c.Close()
			seen[c.ID]++
			pids[c.Pids[0]]++
			if err := c.Ack(context.Background()); err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if len(seen) != 3 || len(pids) != 3 || len(errs) != 3 {
		t.Errorf("6 claims on 3 VMs: VMs %v, pids %v, refusals %v", seen, pids, errs)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("VM %s handed out %d times", id, n)
		}
	}
	for _, err := range errs {
		if !strings.Contains(err.Error(), "empty") {
			t.Errorf("refusal %v, want an empty pool", err)
		}
	}
}

// An idle VM that ends is dropped and replaced.
func TestDeadIdleVMReplaced(t *testing.T) {
	f := startFakePool(t, 1, nil)
	dead := f.waitReady(t, 1)[0]
	m := f.member(dead.ID)
	_ = m.vm.(*fakeVM).cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := GetStatus(context.Background(), f.socket)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Ready) == 1 && st.Ready[0].ID != dead.ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dead VM %s was not replaced: %+v", dead.ID, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, destroys := resOf(m).counts(); destroys != 1 {
		t.Errorf("the dead VM's resources were destroyed %d times", destroys)
	}
	c, err := claim(t, f)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.ID == dead.ID {
		t.Error("the dead VM was handed out")
	}
}

// Stopping the pool destroys its idle VMs.
func TestStopDestroysIdle(t *testing.T) {
	f := &fakePool{booted: map[string]*member{}}
	t.Run("pool", func(t *testing.T) {
		f = startFakePool(t, 2, nil)
		f.waitReady(t, 2)
	})
	for id, m := range f.booted {
		if killed, _ := m.vm.(*fakeVM).state(); !killed || resOf(m).destroys != 1 {
			t.Errorf("idle VM %s not destroyed when the pool stopped", id)
		}
	}
}
