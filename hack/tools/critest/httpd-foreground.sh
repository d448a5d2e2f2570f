#!/bin/sh
# httpd-foreground: the command of registry.k8s.io/e2e-test-images/httpd:2.4.39-4
# as hack/critest-images builds it (the real image's CMD has the same name):
# busybox httpd on port 80 in the foreground. critest's multi-container log
# spec looks for "httpd" in the container's log, which Apache's startup
# warning has; this line has it too.
echo "httpd-foreground: busybox httpd -f -p 80 -h /usr/local/apache2/htdocs (msb critest stand-in for Apache httpd)" >&2
exec httpd -f -p 80 -h /usr/local/apache2/htdocs
