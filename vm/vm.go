package vm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/log"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/vm/phase"
)

// VM is a running microVM whose agent answered.
type VM struct {
	// Agent is the channel to msb-agent in the guest.
	Agent   *api.Client
	Backend string
	spec    Spec
	opts    Options
	proc    *vmm
	files   runFiles
	console *consoleLog
	cgroup  *hostCgroup

	stopOnce sync.Once

	mu sync.Mutex
	// channelErr says why the channel ended before the VMM did, which
	// then was killed.
	channelErr error

	// boot is what the host saw of the boot, for its phases.
	boot bootSeen
}

// runFiles are the VMM's files, kept next to the console log.
type runFiles struct {
	dir, vmmLog, vmmSpec, vmmError string
	// console is the FIFO the VMM writes the guest console into; the shim
	// copies it to Spec.ConsoleLog, capped (consoleLog).
	console string
}

func newRunFiles(spec *Spec) runFiles {
	dir := filepath.Dir(spec.ConsoleLog)
	return runFiles{
		dir:      dir,
		vmmLog:   filepath.Join(dir, "vmm.log"),
		vmmSpec:  filepath.Join(dir, "vmm.json"),
		vmmError: filepath.Join(dir, "vmm-error.json"),
		console:  filepath.Join(dir, "console.pipe"),
	}
}

func (f runFiles) share(tag string) string { return filepath.Join(f.dir, "fs-"+tag+".sock") }

// Start boots a VM and returns once its agent answers. On any error
// nothing is left running.
func Start(ctx context.Context, opts Options, spec Spec) (*VM, error) {
	v, b, err := newVM(ctx, opts, spec)
	if err != nil {
		return nil, err
	}
	rec := phase.From(ctx)
	if err := v.launch(ctx, b); err != nil {
		rec.End(err)
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	if err := v.connect(ctx); err != nil {
		v.proc.kill()
		v.removeFiles()
		v.placeBoot(ctx)
		rec.End(err)
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	v.placeBoot(ctx)
	// The CPU quota comes once the agent answers, before anything of the
	// container runs: the boot is the runtime's, and a 100m VM on TCG
	// with its quota from the start died in early boot (QEMU exited after
	// 3 s, the guest having rebooted before its console was up).
	if err := v.cgroup.setCPU(v.spec.hostResources(true)); err != nil {
		v.Kill()
		return nil, err
	}
	return v, nil
}

// newVM checks spec and the host and picks the backend that boots it.
func newVM(ctx context.Context, opts Options, spec Spec) (*VM, Backend, error) {
	opts = opts.withDefaults()
	if err := spec.Validate(); err != nil {
		return nil, nil, fmt.Errorf("invalid VM spec: %w", err)
	}
	if err := spec.checkFiles(); err != nil {
		return nil, nil, err
	}
	host := DetectHostVirt()
	b, err := SelectBackend(opts, host)
	if err != nil {
		return nil, nil, err
	}
	log.G(ctx).WithField("backend", b.Name()).Debugf("starting VM: %s", host.Reason)
	if err := CheckHostMemory(spec.MemoryMiB, spec.Host.Cgroup); err != nil {
		return nil, nil, err
	}
	return &VM{Backend: b.Name(), spec: spec, opts: opts, files: newRunFiles(&spec)}, b, nil
}

// Attach makes a VM of a stand-in VMM, cmd, whose agent channel is
// conn, and returns once the agent answers: what runs above a VM can then
// be tested against an agent that is not in one. Shutdown and Kill end
// cmd as they end a VMM; the channel's ending kills it, as it kills one.
func Attach(ctx context.Context, opts Options, cmd *exec.Cmd, conn net.Conn, copts ...api.ClientOption) (*VM, error) {
	opts = opts.withDefaults()
	p := &vmm{name: filepath.Base(cmd.Path), cmd: cmd}
	if err := p.start(os.DevNull, opts.DieWithParent); err != nil {
		conn.Close()
		return nil, err
	}
	v := &VM{Backend: "attached", opts: opts, proc: p}
	ctx, cancel := context.WithTimeout(ctx, opts.BootTimeout)
	defer cancel()
	if err := v.handshake(ctx, conn, copts...); err != nil {
		p.kill()
		return nil, err
	}
	return v, nil
}

// launch makes the console FIFO and the host cgroup and starts the VMM in
// them; on error nothing is left.
func (v *VM) launch(ctx context.Context, b Backend) (retErr error) {
	_ = os.Remove(v.spec.AgentSocket)
	_ = os.Remove(v.files.vmmError)
	var err error
	if v.console, err = startConsole(v.files.console, v.spec.ConsoleLog); err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			v.release()
		}
	}()
	if v.cgroup, err = newHostCgroup(&v.spec, v.spec.hostResources(false)); err != nil {
		return err
	}
	phase.From(ctx).Begin(ctx, phase.VMMStart)
	err = inNetNS(v.spec.Net, func() (err error) {
		v.proc, err = b.launch(ctx, &v.spec, v.files)
		return err
	})
	if err != nil {
		return err
	}
	// Right after the VMM's fork, before it has set up the guest, let
	// alone run it. Helpers start first (the VMM connects to them) and
	// move in with it: what they allocated until then is their start-up.
	if err := v.cgroup.add(v.proc.pids()...); err != nil {
		v.proc.kill()
		return err
	}
	go func() {
		<-v.proc.done
		v.console.vmmEnded()
	}()
	return nil
}

// checkFiles checks what the VMM would otherwise fail on late or vaguely.
func (s *Spec) checkFiles() error {
	var errs []error
	need := func(what, path string) {
		if st, err := os.Stat(path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		} else if !st.Mode().IsRegular() {
			errs = append(errs, fmt.Errorf("%s %s is not a regular file", what, path))
		}
	}
	need("boot disk", s.BootDisk)
	for _, d := range s.Disks {
		need("disk "+d.ID, d.Path)
	}
	for _, sh := range s.Shares {
		if st, err := os.Stat(sh.Path); err != nil || !st.IsDir() {
			errs = append(errs, fmt.Errorf("share %s: %s is not a directory", sh.Tag, sh.Path))
		}
	}
	return errors.Join(errs...)
}

// connect dials the agent socket and waits for Ping, failing early when
// the VMM ends first and always by the boot deadline.
func (v *VM) connect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, v.opts.BootTimeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	if err := waitFile(v.spec.AgentSocket, deadline, v.proc.done); err != nil {
		return v.bootError(ctx, err)
	}
	conn, err := dialAgent(v.spec.AgentSocket, deadline, v.proc.done)
	if err != nil {
		return v.bootError(ctx, err)
	}
	// The VMM listens: from here on the guest boots. Which of its phases
	// took how long only the guest's answer tells (placeBoot).
	v.boot.listening = time.Now()
	if err := v.readHello(ctx, conn); err != nil {
		conn.Close()
		return v.bootError(ctx, err)
	}
	return v.handshake(ctx, conn)
}

// readHello reads the agent's hello (api.Hello) by the boot deadline,
// failing early when the VMM ends.
func (v *VM) readHello(ctx context.Context, conn net.Conn) error {
	deadline, _ := ctx.Deadline()
	read := make(chan error, 1)
	go func() { read <- api.ReadHello(conn, deadline) }()
	select {
	case err := <-read:
		return err
	case <-v.proc.done:
		conn.Close()
		<-read
		return errVMMEnded
	}
}

// handshake starts the channel on conn and waits for the agent's Ping.
func (v *VM) handshake(ctx context.Context, conn net.Conn, opts ...api.ClientOption) error {
	c, err := api.NewClient(conn, opts...)
	if err != nil {
		conn.Close()
		return err
	}
	pinged := make(chan error, 1)
	var pong *api.PingResponse
	go func() {
		var err error
		pong, err = c.Ping(ctx, &api.PingRequest{})
		pinged <- err
	}()
	select {
	case err = <-pinged:
	case <-v.proc.done:
		err = errVMMEnded
	}
	if err != nil {
		c.Close()
		return v.bootError(ctx, err)
	}
	v.boot.answered, v.boot.pong = time.Now(), pong
	v.Agent = c
	go v.watchChannel()
	return nil
}

// watchChannel kills the VMM when the agent channel ends while it runs:
// the host gave up a guest that broke the channel's protocol or stopped
// reading it, or the guest closed it. A VM without its agent can only be
// killed, and its end reads as the VMM's (Done, Err), as when it crashes.
// A channel that ends because the VMM is ending does so first: the VMM
// is given a moment, so that Err says why it ended.
func (v *VM) watchChannel() {
	select {
	case <-v.proc.done:
		return
	case <-v.Agent.Done():
	}
	if v.waitGone(time.Second) {
		return
	}
	v.mu.Lock()
	if !v.proc.exited() {
		v.channelErr = v.Agent.Err()
	}
	v.mu.Unlock()
	v.Kill()
}

// dialAgent dials the agent socket. QEMU creates the socket file before
// it listens on it, so a refused dial is retried until the deadline.
func dialAgent(path string, deadline time.Time, done <-chan struct{}) (net.Conn, error) {
	for {
		conn, err := net.Dial("unix", path)
		if err == nil {
			return conn, nil
		}
		if !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
			return nil, fmt.Errorf("dial agent: %w", err)
		}
		select {
		case <-done:
			return nil, errVMMEnded
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (v *VM) bootError(ctx context.Context, err error) error {
	// A channel that closes during boot usually means the VMM is ending:
	// give it a moment so the error says why.
	if !errors.Is(err, errVMMEnded) {
		v.waitGone(time.Second)
	}
	if v.proc.exited() || errors.Is(err, errVMMEnded) {
		<-v.proc.done
		v.console.drained()
		return fmt.Errorf("VM ended before its agent answered (%s): %w%s", v.bootReached(), v.proc.endError(), v.consoleTail())
	}
	if ctx.Err() != nil {
		return fmt.Errorf("agent did not answer within %s (%s)%s%s", v.opts.BootTimeout, v.bootReached(), v.proc.tails(), v.consoleTail())
	}
	return fmt.Errorf("agent: %w%s%s", err, v.proc.tails(), v.consoleTail())
}

// consoleTail is the end of the guest console, for errors.
func (v *VM) consoleTail() string {
	if t := logTail(v.spec.ConsoleLog, 2048); t != "" {
		return fmt.Sprintf("\n--- %s (tail) ---\n%s", filepath.Base(v.spec.ConsoleLog), t)
	}
	return ""
}

// Pid is the VMM's process id.
func (v *VM) Pid() int { return v.proc.pid() }

// Pids are the VMM's and its helpers' process ids.
func (v *VM) Pids() []int { return slices.Clone(v.proc.pids()) }

// Done is closed once the VMM has ended.
func (v *VM) Done() <-chan struct{} { return v.proc.done }

// Err says why the VMM ended; call it after Done is closed.
func (v *VM) Err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.channelErr != nil {
		return fmt.Errorf("VMM killed: %w", v.channelErr)
	}
	return v.proc.endError()
}

// Shutdown asks the agent to end the VM cleanly (sync, unmount, reboot)
// and kills the VMM if it has not ended within the stop timeout. Once the
// agent has answered, every writable disk is unmounted and its writes
// have reached the VMM, which already passed them to the host: the VMM is
// killed then rather than waiting for the guest kernel's reboot.
func (v *VM) Shutdown(ctx context.Context) error {
	var err error
	v.stopOnce.Do(func() { err = v.shutdown(ctx) })
	return err
}

func (v *VM) shutdown(ctx context.Context) error {
	defer v.removeFiles()
	defer v.Agent.Close()
	ctx, cancel := context.WithTimeout(ctx, v.opts.StopTimeout)
	defer cancel()
	_, reqErr := v.Agent.Shutdown(ctx, &api.Empty{})
	if reqErr == nil {
		v.proc.kill()
		return nil
	}
	select {
	case <-v.proc.done:
		return nil
	case <-ctx.Done():
	}
	v.proc.kill()
	if reqErr != nil {
		return fmt.Errorf("shutdown: %w; VMM killed", reqErr)
	}
	return fmt.Errorf("VM did not end within %s of shutdown; VMM killed", v.opts.StopTimeout)
}

// Kill ends the VMM at once.
func (v *VM) Kill() {
	v.stopOnce.Do(func() {
		v.proc.kill()
		if v.Agent != nil { // a warm VM has no channel yet
			v.Agent.Close()
		}
		v.removeFiles()
	})
}

// removeFiles ends what the VM held besides the VMM, once it has ended:
// the console copier, the host cgroup (and anything left in it) and the
// sockets.
func (v *VM) removeFiles() {
	v.release()
	if v.files.dir == "" {
		return // attached: none of its own
	}
	for _, p := range []string{v.spec.AgentSocket, v.files.vmmSpec, v.files.vmmError} {
		_ = os.Remove(p)
	}
	for _, sh := range v.spec.Shares {
		_ = os.Remove(v.files.share(sh.Tag))
	}
}

func (v *VM) release() {
	if v.console != nil {
		v.console.stop()
	}
	if err := v.cgroup.remove(); err != nil {
		log.L.WithError(err).Warn("VM cleanup")
	}
}

// waitGone waits for the VMM to end, at most d.
func (v *VM) waitGone(d time.Duration) bool {
	select {
	case <-v.proc.done:
		return true
	case <-time.After(d):
		return false
	}
}
