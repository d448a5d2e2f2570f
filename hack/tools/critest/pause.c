// pause: the sandbox ("pause") container's program for the image
// registry.k8s.io/pause:3.10.2 as hack/critest-images builds it; the same
// behaviour as Kubernetes' build/pause/linux/pause.c: sleep until SIGINT or
// SIGTERM (exit 0), reaping children (it is pid 1 of a shared pid namespace).
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void sigdown(int signo) {
	psignal(signo, "Shutting down, got signal");
	exit(0);
}

static void sigreap(int signo) {
	(void)signo;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

int main(int argc, char **argv) {
	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		printf("pause (msb critest stand-in)\n");
		return 0;
	}
	if (getpid() != 1)
		fprintf(stderr, "Warning: pause should be the first process\n");

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = sigdown;
	if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
		return 1;
	sa.sa_handler = sigreap;
	sa.sa_flags = SA_NOCLDSTOP;
	if (sigaction(SIGCHLD, &sa, NULL) < 0)
		return 3;
	for (;;)
		pause();
}
