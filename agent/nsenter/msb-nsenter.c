/*
 * msb-nsenter: joins namespaces, then execs the agent's setup stage.
 *
 * A Go program cannot join a user namespace (setns refuses a process with
 * more than one thread) nor, with its threads sharing one fs_struct, a mount
 * namespace; the Go runtime starts its threads before main. The agent forks
 * this single-threaded helper instead, for a process that must enter a
 * container's namespaces: an exec (the container's mount namespace, and
 * its user namespace when it has one), or the init of a user-namespace
 * container that shares another's PID namespace and so its user namespace.
 * It keeps the setup stage's descriptors (0-2 stdio, 3 the
 * config pipe, 4 the close-on-exec error pipe) and the pid, which the agent
 * already holds as a pidfd.
 *
 *   msb-nsenter EXE-FD UNSHARE-FLAGS NS-FD...
 *
 * joins each NS-FD in order (setns with type 0: the file says which),
 * becomes uid and gid 0 (the root of the user namespace it joined: execve
 * keeps capabilities only for it; the real root is not mapped there),
 * unshares UNSHARE-FLAGS (decimal clone flags, 0 for none) and execveat()s
 * EXE-FD as "msb-exec-init exec-init". On failure it writes why to fd 4 and
 * exits 255; the agent reads that as the setup stage's error.
 *
 * Build: gcc -static -Os -Wall -Werror -o msb-nsenter msb-nsenter.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ERROR_FD 4

static void fail(const char *what, const char *arg) {
	dprintf(ERROR_FD, "msb-nsenter: %s %s: %s", what, arg, strerror(errno));
	_exit(255);
}

static int parse_num(const char *s, long max) {
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 0 || v > max) {
		errno = EINVAL;
		fail("bad number", s);
	}
	return (int)v;
}

int main(int argc, char **argv) {
	char *exec_argv[] = {"msb-exec-init", "exec-init", NULL};
	char *exec_env[] = {NULL};
	int exe, flags, i;

	if (argc < 3) {
		errno = EINVAL;
		fail("usage:", "msb-nsenter EXE-FD UNSHARE-FLAGS NS-FD...");
	}
	exe = parse_num(argv[1], 65535);
	flags = parse_num(argv[2], 0x7fffffff);
	for (i = 3; i < argc; i++) {
		int fd = parse_num(argv[i], 65535);
		if (setns(fd, 0) < 0)
			fail("setns", argv[i]);
		close(fd);
	}
	if (argc > 3) {
		/* Fails where the namespace denies setgroups; none are held then. */
		setgroups(0, NULL);
		if (setresgid(0, 0, 0) < 0)
			fail("setresgid", "0");
		if (setresuid(0, 0, 0) < 0)
			fail("setresuid", "0");
	}
	if (flags != 0 && unshare(flags) < 0)
		fail("unshare", argv[2]);
	if (fcntl(exe, F_SETFD, FD_CLOEXEC) < 0)
		fail("cloexec", argv[1]);
	syscall(SYS_execveat, exe, "", exec_argv, exec_env, AT_EMPTY_PATH);
	fail("execveat", argv[1]);
	return 255;
}
