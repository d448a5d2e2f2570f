package task

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// loggerExitTimeout bounds the wait for a logging binary to flush and
// exit once the process's output ended.
const loggerExitTimeout = 10 * time.Second

// binaryLogger is a logging binary (a binary:// or binary-v2:// stdio
// URI, e.g. nerdctl's log driver) run the way containerd's runc shim runs
// it: the process's stdout on its fd 3, stderr on fd 4, and fd 5 to say it
// is ready.
type binaryLogger struct {
	cmd            *exec.Cmd
	stdout, stderr *os.File
	exited         chan struct{}
}

func isBinaryURI(s string) (*url.URL, bool) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "binary" && u.Scheme != "binary-v2") {
		return nil, false
	}
	return u, true
}

func startBinaryLogger(ctx context.Context, u *url.URL, id string) (_ *binaryLogger, retErr error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	pipe := func() (r, w *os.File, err error) {
		if r, w, err = os.Pipe(); err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	outR, outW, err := pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := pipe()
	if err != nil {
		return nil, err
	}
	readyR, readyW, err := pipe()
	if err != nil {
		return nil, err
	}
	var args []string
	for k, vs := range u.Query() {
		args = append(args, k)
		if len(vs) > 0 {
			args = append(args, vs[0])
		}
	}
	cmd := exec.Command(u.Path, args...)
	cmd.Env = []string{"CONTAINER_ID=" + id, "CONTAINER_NAMESPACE=" + ns}
	cmd.ExtraFiles = []*os.File{outR, errR, readyW}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start logging binary %s: %w", u.Path, err)
	}
	l := &binaryLogger{cmd: cmd, stdout: outW, stderr: errW, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(l.exited) }()
	defer func() {
		if retErr != nil {
			_ = cmd.Process.Kill()
		}
	}()
	readyW.Close() // our copy: EOF must come from the logger alone
	b := make([]byte, 1)
	n, err := readyR.Read(b)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("logging binary %s: %w", u.Path, err)
	}
	if u.Scheme == "binary-v2" && n == 0 {
		return nil, fmt.Errorf("logging binary %s ended before it was ready", u.Path)
	}
	files = []*os.File{outR, errR, readyR} // the writers are the logger's
	return l, nil
}

// Close closes the logger's input and waits for it to exit.
func (l *binaryLogger) Close() error {
	l.stdout.Close()
	l.stderr.Close()
	select {
	case <-l.exited:
		return nil
	case <-time.After(loggerExitTimeout):
		_ = l.cmd.Process.Kill()
		return fmt.Errorf("logging binary %s did not exit in %s; killed", l.cmd.Path, loggerExitTimeout)
	}
}
