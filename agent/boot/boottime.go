package boot

import (
	"bytes"
	"errors"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/service"
)

// The guest's boot as its own clock sees it, for the host's phase timing
// (Ping): when the kernel started /init, when Run began and when the agent
// began serving.

// initRecord is what the kernel logs as it starts /init
// (init/main.c, run_init_process), at KERN_INFO: kept in the kernel log
// even with "quiet".
var initRecord = []byte("Run /init as init process")

// initExecAt finds when the kernel started /init in the kernel log
// (/dev/kmsg records: "prio,seq,usec,flags;text"), 0 when it is not
// there. Read once, at boot: it is a few hundred records.
func initExecAt() time.Duration {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	buf := make([]byte, 2048) // one record per read; longer ones fail with EINVAL
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case errors.Is(err, unix.EPIPE) || errors.Is(err, unix.EINVAL):
			continue // a record overwritten while reading it, or too long
		case err != nil || n <= 0:
			return 0 // EAGAIN: the end of the log
		}
		if at, ok := parseInitRecord(buf[:n]); ok {
			return at
		}
	}
}

// parseInitRecord returns the time of a kmsg record if it is initRecord.
func parseInitRecord(rec []byte) (time.Duration, bool) {
	head, text, ok := bytes.Cut(rec, []byte{';'})
	if !ok || !bytes.HasPrefix(text, initRecord) {
		return 0, false
	}
	f := bytes.Split(head, []byte{','})
	if len(f) < 3 {
		return 0, false
	}
	us, err := strconv.ParseUint(string(f[2]), 10, 63)
	if err != nil {
		return 0, false
	}
	return time.Duration(us) * time.Microsecond, true
}

// bootTimes are the guest's boot times once the agent is about to serve.
func bootTimes(main time.Duration) service.BootTimes {
	return service.BootTimes{InitExec: initExecAt(), Main: main, Serving: service.BootClock()}
}
