package process

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMain doubles as the setup stage: Start re-execs /proc/self/exe,
// which is this test binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == InitArg {
		RunInit()
	}
	// Orphans (a test's background children) come back to us and are reaped.
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) //nolint:errcheck
	os.Exit(m.Run())
}
