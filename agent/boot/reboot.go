package boot

import (
	"context"
	"os"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// setupLogging sends plain, timestamped text to the console (stderr).
func setupLogging() {
	log.L.Logger.SetOutput(os.Stderr)
	log.L.Logger.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, DisableColors: true, TimestampFormat: time.RFC3339Nano})
}

// Fatal logs err and ends the VM; PID 1 never exits.
func Fatal(ctx context.Context, err error) {
	log.G(ctx).WithError(err).Error("msb-agent: fatal")
	Reboot(ctx)
}

// Reboot syncs and restarts the VM, which ends it.
func Reboot(ctx context.Context) {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		log.G(ctx).WithError(err).Error("reboot")
	}
	select {} // never return from PID 1
}
