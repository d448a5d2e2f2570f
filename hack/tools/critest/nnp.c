// nnp: the program of registry.k8s.io/e2e-test-images/nonewprivs:1.3 as
// hack/critest-images builds it. Installed setuid root (mode 4755): run as
// uid 1000 it prints "Effective uid: 0" unless no_new_privs stops the setuid
// bit, then "Effective uid: 1000" (critest's NoNewPrivs specs).
#include <stdio.h>
#include <unistd.h>

int main(void) {
	printf("Effective uid: %d\n", (int)geteuid());
	return 0;
}
