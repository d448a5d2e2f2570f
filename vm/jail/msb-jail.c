/*
 * msb-jail: the last step before a VM's file server runs.
 *
 * The shim starts it as PID 1 of new PID, mount, network, IPC and UTS
 * namespaces (clone flags; package vm). It keeps the mount namespace a
 * slave of the shim's, so the exports the shim binds into the VM's share
 * after boot still reach the file server, and none of the server's mounts
 * go back; mounts a procfs of the new PID namespace on /proc, with the
 * parts a container runtime hides from a container hidden or read-only
 * (the server keeps /proc/self/fd open: its ".." leads to that procfs, where
 * it finds itself, no other process, and no writable /proc/sys); sets
 * no_new_privs; and execs the server, which stays PID 1. The server then
 * chroots into the share, drops its capabilities and installs its seccomp
 * filter itself (virtiofsd --sandbox chroot: "for when the runtime set up
 * the namespaces").
 *
 *   msb-jail PROGRAM [ARG...]
 *
 * On failure it says why on stderr and exits 125.
 *
 * Build: gcc -static -Os -Wall -Werror -o msb-jail msb-jail.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define FS_FLAGS (MS_NOSUID | MS_NODEV | MS_NOEXEC)

/* The OCI runtime spec's defaults (runc, containerd). */
static const char *read_only[] = {
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};
static const char *masked[] = {
	"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
	"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
};

static int fail(const char *what, const char *path)
{
	fprintf(stderr, "msb-jail: %s %s: %s\n", what, path, strerror(errno));
	return 125;
}

static int make_read_only(const char *p)
{
	if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) != 0)
		return errno == ENOENT ? 0 : -1;
	return mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | FS_FLAGS, NULL);
}

static int mask(const char *p)
{
	struct stat st;

	if (stat(p, &st) != 0)
		return errno == ENOENT ? 0 : -1;
	if (S_ISDIR(st.st_mode))
		return mount("tmpfs", p, "tmpfs", MS_RDONLY | FS_FLAGS, "size=0");
	return mount("/dev/null", p, NULL, MS_BIND, NULL);
}

int main(int argc, char **argv)
{
	size_t i;

	if (argc < 2) {
		fprintf(stderr, "usage: msb-jail PROGRAM [ARG...]\n");
		return 125;
	}
	if (getpid() != 1) {
		errno = EINVAL;
		return fail("not PID 1 of a PID namespace of its own:", argv[1]);
	}
	if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) != 0)
		return fail("make a slave:", "/");
	if (mount("proc", "/proc", "proc", FS_FLAGS, NULL) != 0)
		return fail("mount", "/proc");
	for (i = 0; i < sizeof(read_only) / sizeof(read_only[0]); i++)
		if (make_read_only(read_only[i]) != 0)
			return fail("make read-only", read_only[i]);
	for (i = 0; i < sizeof(masked) / sizeof(masked[0]); i++)
		if (mask(masked[i]) != 0)
			return fail("mask", masked[i]);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return fail("set", "no_new_privs");
	execv(argv[1], argv + 1);
	return fail("exec", argv[1]);
}
