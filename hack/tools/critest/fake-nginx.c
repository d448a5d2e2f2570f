// fake-nginx: a stand-in for nginx in the images that hack/critest-images
// builds for critest (registry.k8s.io/e2e-test-images/nginx:1.14-2 and
// gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64), since no registry with
// the real images is reachable here. What critest relies on:
//   * /var/run/nginx.pid holds the master's pid (HostPID spec);
//   * the master's command line contains "master process" (ContainerPID and
//     PodPID specs read /proc/1/cmdline);
//   * `pidof nginx` finds the master (its comm is "nginx");
//   * it serves an index page over HTTP (port-forward specs).
// It re-executes itself with nginx's process title, writes the pid file, runs
// busybox httpd in the foreground as its "worker", forwards SIGTERM/SIGINT/
// SIGQUIT to it, and exits when it exits. The listen address is the first
// line of /etc/nginx/listen (busybox httpd -p syntax: "80",
// "127.0.0.1:12003"); default 80. Document root: /usr/share/nginx/html.
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define TITLE "nginx: master process nginx -g daemon off;"
#define PIDFILE "/var/run/nginx.pid"
#define LISTEN "/etc/nginx/listen"
#define ROOT "/usr/share/nginx/html"

static volatile pid_t worker;

static void forward(int sig) {
	if (worker > 0)
		kill(worker, sig);
	else
		_exit(0);
}

int main(int argc, char **argv) {
	(void)argc;
	if (strcmp(argv[0], TITLE) != 0) {
		// exec by path (not /proc/self/exe) so that comm stays "nginx"
		char self[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
		if (n <= 0) {
			perror("nginx: readlink /proc/self/exe");
			return 1;
		}
		self[n] = 0;
		char *nargv[] = {TITLE, NULL};
		execv(self, nargv);
		perror("nginx: re-exec");
		return 1;
	}

	char listen[64] = "80";
	FILE *f = fopen(LISTEN, "r");
	if (f) {
		if (fgets(listen, sizeof listen, f))
			listen[strcspn(listen, " \t\r\n")] = 0;
		fclose(f);
		if (!listen[0])
			strcpy(listen, "80");
	}

	mkdir("/var/run", 0755);
	f = fopen(PIDFILE, "w");
	if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0) {
		perror("nginx: " PIDFILE);
		return 1;
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = forward;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);

	pid_t pid = fork();
	if (pid < 0) {
		perror("nginx: fork");
		return 1;
	}
	if (pid == 0) {
		execlp("httpd", "httpd", "-f", "-p", listen, "-h", ROOT, (char *)NULL);
		perror("nginx: exec httpd");
		_exit(127);
	}
	worker = pid;
	fprintf(stderr, "nginx (fake): pid %d, worker (busybox httpd) pid %d on %s\n", (int)getpid(), (int)pid, listen);

	// Reap everything (we may be pid 1); leave when the worker is gone.
	for (;;) {
		int st;
		pid_t p = wait(&st);
		if (p < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		if (p == pid) {
			unlink(PIDFILE);
			if (WIFEXITED(st))
				return WEXITSTATUS(st);
			return 0; // stopped by a signal we forwarded
		}
	}
}
