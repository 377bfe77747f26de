#!/bin/sh
# The baseline of bench/time_to_ready.py: what beta9's worker and gVisor's image tests do,
# in shell. runsc create + start of a bundle, then ask dockerd `GET /_ping` through the
# host-visible socket every INTERVAL seconds (curl, 2 s per attempt) until it answers OK.
#   runsc_poll.sh RUNSC_ROOT BUNDLE ID SOCKET INTERVAL LOG
# Prints "CREATED_NS STARTED_NS READY_NS FAILED_ATTEMPTS" (UNIX ns). The caller bounds it.
set -u
runsc_root=$1 bundle=$2 id=$3 sock=$4 interval=$5 log=$6
set -- --root "$runsc_root" --platform=ptrace --network=none --host-uds=create
runsc "$@" create --bundle "$bundle" --pid-file "$bundle/sandbox.pid" "$id" >>"$log" 2>&1 || exit 1
created=$(date +%s%N)
runsc "$@" start "$id" >>"$log" 2>&1 || exit 2
started=$(date +%s%N)
n=0
until [ "$(curl -s --max-time 2 --unix-socket "$sock" http://docker/_ping)" = OK ]; do
  n=$((n + 1))
  sleep "$interval"
done
echo "$created $started $(date +%s%N) $n"
