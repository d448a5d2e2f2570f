#!/bin/sh
# pgrep PATTERN: a stand-in (Debian's busybox has no pgrep) for the images
# hack/critest-images builds. Prints the pids of the processes whose name
# (/proc/PID/comm) contains PATTERN (a plain substring, not a regexp), except
# its own; exit 1 when there is none. critest runs `sh -c "pgrep sleep || true"`.
[ $# -eq 1 ] || { echo "usage: pgrep PATTERN" >&2; exit 2; }
rc=1
for d in /proc/[0-9]*; do
	[ "${d#/proc/}" = "$$" ] && continue
	comm=
	read -r comm 2>/dev/null <"$d/comm" || continue
	case $comm in
	*"$1"*) echo "${d#/proc/}"; rc=0 ;;
	esac
done
exit $rc
