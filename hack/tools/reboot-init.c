// /init of floor.erofs, the benchmark floor's boot disk: flush and reboot at
// once. With the kernel's reboot=t and QEMU's -no-reboot (or libkrun's reset
// handling) the VMM exits, so "exec VMM → exit" measures the bare boot.
// Build: gcc -static -Os -o reboot-init reboot-init.c
#include <sys/reboot.h>
#include <unistd.h>

int main(void) {
  sync();
  reboot(RB_AUTOBOOT);
  return 1; // only reached if reboot failed; PID 1 exiting panics the kernel
}
