#!/usr/bin/env bash
# Keeps one training process running on this host: starts COMMAND, appends its output to LOG,
# and starts it again (it resumes from the newest checkpoint) when it fails, e.g. after a peer
# host was preempted, a storage fault ended it (exit 1), or the watchdog fired (exit 3): exit
# codes mean the same as in mmjax/cli.py and the JobSet's podFailurePolicy. Stops when COMMAND
# exits 0 (finished, or it checkpointed on SIGTERM), exits 2 (a user error a restart cannot fix:
# config, data, a workdir another trainer holds), STOPFILE exists, or
# after MMJAX_MAX_RESTARTS (default 100) restarts. SIGTERM/SIGINT are passed to COMMAND. Its own
# pid goes to LOG with .pid for .log (what `launch/tpu_pod.sh stop` signals).
#
# usage: launch/supervise.sh LOG STOPFILE -- COMMAND [ARG...]
set -uo pipefail

if (($# < 4)) || [[ "$3" != '--' ]]; then
  echo 'usage: launch/supervise.sh LOG STOPFILE -- COMMAND [ARG...]' >&2
  exit 2
fi
log="$1" stopfile="$2"
shift 3
max="${MMJAX_MAX_RESTARTS:-100}" delay="${MMJAX_RESTART_DELAY:-10}"
mkdir -p "$(dirname "$log")"
echo $$ > "${log%.log}.pid"
child=''
stopping=0
on_signal() { stopping=1; [[ -n "$child" ]] && kill -s "$1" "$child" 2>/dev/null; }
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT

restarts=0
while :; do
  echo "supervise: $(date -u +%FT%TZ) starting (restart $restarts): $*" >> "$log"
  "$@" >> "$log" 2>&1 &
  child=$!
  status=0
  while kill -0 "$child" 2>/dev/null; do  # `wait` returns early when a trapped signal arrives
    status=0; wait "$child" || status=$?
  done
  s=0; wait "$child" 2>/dev/null || s=$?
  if ((s != 127)); then status=$s; fi
  echo "supervise: $(date -u +%FT%TZ) exit status $status" >> "$log"
  if ((status == 0 || status == 2 || stopping)) || [[ -e "$stopfile" ]]; then
    exit "$status"
  fi
  if ((restarts >= max)); then
    echo "supervise: giving up after $restarts restarts" >> "$log"
    exit "$status"
  fi
  restarts=$((restarts + 1))
  sleep "$delay"
done
