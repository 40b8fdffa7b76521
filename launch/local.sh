#!/usr/bin/env bash
# Runs one command as N cooperating JAX processes on this machine: the multi-host code path
# (jax.distributed over loopback, CPU devices, cross-process collectives over gloo, orbax
# multi-process checkpoints) without a cluster. See launch/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/local.sh [-n PROCESSES] [-d DEVICES] [-p PORT] -- COMMAND [ARG...]

Starts PROCESSES (default 2) copies of COMMAND, each with DEVICES (default 4) CPU devices,
joined through a coordinator on 127.0.0.1:PORT (default: a free port). Process 0 prints as
usual; the others' lines are prefixed with [process i]. SIGTERM/SIGINT are passed to every
process (they checkpoint and exit 0); if one process fails, the others are killed and its exit
code is returned.

example:
  launch/local.sh -n 2 -d 4 -- python -m mmjax.train --config=configs/demo.py --workdir=runs/mp
EOF
}

processes=2 devices=4 port=''
while getopts 'n:d:p:h' opt; do
  case "$opt" in
    n) processes="$OPTARG" ;;
    d) devices="$OPTARG" ;;
    p) port="$OPTARG" ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ "${1:-}" == '--' ]] && shift
if (($# == 0)); then usage >&2; exit 2; fi
if [[ -z "$port" ]]; then
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi

pids=()
for ((i = 0; i < processes; i++)); do
  export MMJAX_COORDINATOR="127.0.0.1:$port" MMJAX_NUM_PROCESSES="$processes" MMJAX_PROCESS_ID="$i"
  export JAX_PLATFORMS=cpu JAX_NUM_CPU_DEVICES="$devices" MMJAX_CPU_COLLECTIVES=gloo
  if ((i == 0)); then
    "$@" &
  else
    "$@" > >(sed -u "s/^/[process $i] /") 2> >(sed -u "s/^/[process $i] /" >&2) &
  fi
  pids+=("$!")
done

forward() { kill -s "$1" "${pids[@]}" 2>/dev/null || true; }
trap 'forward TERM' TERM
trap 'forward INT' INT

status=0
while ((${#pids[@]})); do
  for i in "${!pids[@]}"; do
    pid="${pids[$i]}"
    kill -0 "$pid" 2>/dev/null && continue
    rc=0
    wait "$pid" || rc=$?
    unset 'pids[i]'
    if ((rc != 0 && status == 0)); then
      status=$rc
      echo "launch/local.sh: a process exited with status $rc; killing the others." >&2
      ((${#pids[@]})) && kill -KILL "${pids[@]}" 2>/dev/null || true
    fi
  done
  sleep 0.2
done
exit "$status"
