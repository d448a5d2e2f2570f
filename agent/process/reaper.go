package process

import (
	"os"
	"os/signal"
	"sync"

	"golang.org/x/sys/unix"
)

// The reaper is the only caller of wait(2) in the agent. As PID 1 it also
// inherits every orphan, so it waits for any child (wait4(-1)) and hands
// each status to whoever started that pid; orphans are reaped and
// forgotten. Starting a process registers its pid under the same lock the
// dispatch takes, so a child that exits at once is never reaped before its
// owner is known. Nothing else in the agent may wait for a child: no
// exec.Cmd.Wait, no os.Process.Wait.
type reaper struct {
	mu      sync.Mutex
	waiters map[int]chan unix.WaitStatus
	once    sync.Once
}

var theReaper = &reaper{waiters: map[int]chan unix.WaitStatus{}}

// StartReaper starts reaping children; PID 1 calls it first thing. Starting
// a process starts it too.
func StartReaper() { theReaper.start() }

func (r *reaper) start() {
	r.once.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, unix.SIGCHLD)
		go r.loop(ch)
	})
}

func (r *reaper) loop(sigs <-chan os.Signal) {
	for {
		r.reapAll()
		<-sigs
	}
}

// reapAll waits for every child that has exited; SIGCHLDs coalesce, so
// one signal may stand for many exits.
func (r *reaper) reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		r.dispatch(pid, ws)
	}
}

func (r *reaper) dispatch(pid int, ws unix.WaitStatus) {
	r.mu.Lock()
	ch := r.waiters[pid]
	delete(r.waiters, pid)
	r.mu.Unlock()
	if ch != nil {
		ch <- ws
	}
}

// fork runs start (which forks and returns the child's pid) with the
// dispatch held off, and registers the pid. The returned channel receives
// the child's wait status once.
func (r *reaper) fork(start func() (int, error)) (int, <-chan unix.WaitStatus, error) {
	r.start()
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := start()
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan unix.WaitStatus, 1)
	r.waiters[pid] = ch
	return pid, ch, nil
}
