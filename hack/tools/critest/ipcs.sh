#!/bin/sh
# ipcs [-m]: a stand-in (Debian's busybox has no ipcs) for the images
# hack/critest-images builds. Lists the System V shared memory segments of the
# caller's IPC namespace from /proc/sysvipc/shm, in util-linux's layout
# (critest's HostIpc specs look for a segment id in `ipcs -m`).
case ${1:--m} in
-m) ;;
*) echo "ipcs (stand-in): only -m is supported" >&2; exit 1 ;;
esac
echo
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch     status"
[ -r /proc/sysvipc/shm ] || exit 0
# key shmid perms size cpid lpid nattch uid ...
tail -n +2 /proc/sysvipc/shm | while read -r key shmid perms size cpid lpid nattch uid rest; do
	printf '%-10s %-10s %-10s %-10s %-10s %-10s\n' "$key" "$shmid" "$uid" "$perms" "$size" "$nattch"
done
echo
