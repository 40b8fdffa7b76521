#!/usr/bin/env bash
# Trains on a Cloud TPU VM slice: the same command on every worker, detached and supervised;
# the workers find each other through the TPU metadata (MMJAX_DISTRIBUTED=auto). See
# launch/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/tpu_pod.sh setup NAME ZONE
       launch/tpu_pod.sh train NAME ZONE -- TRAIN_ARG...
       launch/tpu_pod.sh logs  NAME ZONE
       launch/tpu_pod.sh stop  NAME ZONE
       launch/tpu_pod.sh watch NAME ZONE -- TRAIN_ARG...

setup  copies this checkout (tracked files, as of HEAD) to ~/mmjax on every worker and
       installs requirements.txt with jax[tpu] into ~/mmjax/.venv.
train  starts `python -m mmjax.train TRAIN_ARG...` on every worker with MMJAX_DISTRIBUTED=auto,
       detached (nohup + setsid: a dropped ssh connection does not stop it) under
       launch/supervise.sh, which restarts it when it fails (a peer host lost, the watchdog),
       resuming from the newest checkpoint. Each worker logs to
       ~/mmjax/logs/train-<hostname>.log. The --workdir must be one place every worker sees:
       gs://bucket/run, or a Filestore/NFS/gcsfuse mount at the same path on each worker.
logs   prints the last lines of every worker's log.
stop   stops the supervisors and sends SIGTERM to the training processes: they finish the
       step, checkpoint, exit 0.
watch  for spot/preemptible slices, run here (e.g. in tmux): every MMJAX_WATCH_SECONDS (300)
       it checks the slice; once it was preempted it deletes and recreates it with
       MMJAX_TPU_CREATE_FLAGS (e.g. "--accelerator-type=v5p-64 --version=v2-alpha-tpuv5
       --spot"), runs setup and train again, and the run resumes from its newest checkpoint.

Environment: GCLOUD_FLAGS (extra flags for gcloud, e.g. --project=P), MMJAX_REPO (a git URL
to clone on the workers instead of copying this checkout).

example:
  launch/tpu_pod.sh setup my-v5p-64 us-east5-a
  launch/tpu_pod.sh train my-v5p-64 us-east5-a -- --config=configs/imp_base.py \
      --workdir=gs://my-bucket/runs/imp_base
EOF
}

if (($# < 3)); then usage >&2; exit 2; fi
action="$1" name="$2" zone="$3"
shift 3
[[ "${1:-}" == '--' ]] && shift
read -r -a extra <<< "${GCLOUD_FLAGS:-}"

on_all_workers() {
  gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all "${extra[@]}" --command="$1"
}

setup() {
  if [[ -n "${MMJAX_REPO:-}" ]]; then
    on_all_workers "rm -rf ~/mmjax && git clone --depth=1 $(printf '%q' "$MMJAX_REPO") ~/mmjax"
  else
    archive="$(mktemp --suffix=.tar.gz)"
    git -C "$(dirname "$0")/.." archive --format=tar.gz -o "$archive" HEAD
    gcloud compute tpus tpu-vm scp "$archive" "$name:mmjax.tar.gz" --zone="$zone" --worker=all \
      "${extra[@]}"
    rm -f "$archive"
    on_all_workers 'rm -rf ~/mmjax && mkdir ~/mmjax && tar -xzf ~/mmjax.tar.gz -C ~/mmjax'
  fi
  on_all_workers 'cd ~/mmjax && python3 -m venv .venv && .venv/bin/pip install -q -U pip &&
    .venv/bin/pip install -q -r requirements.txt "jax[tpu]"'
}

train() {
  if (($# == 0)); then usage >&2; exit 2; fi
  local args
  args="$(printf '%q ' "$@")"
  # setsid + nohup: the supervisor leaves the ssh session (its own session, SIGHUP ignored), so
  # closing or losing the connection leaves training running. The command returns once the
  # supervisor has written its pid, i.e. once it is detached.
  on_all_workers "cd ~/mmjax && mkdir -p logs && rm -f logs/STOP &&
    log=logs/train-\$(hostname).log && rm -f \${log%.log}.pid &&
    { nohup setsid launch/supervise.sh \$log logs/STOP -- env MMJAX_DISTRIBUTED=auto \
        .venv/bin/python -m mmjax.train $args < /dev/null > /dev/null 2>&1 & } &&
    for i in \$(seq 100); do [ -s \${log%.log}.pid ] && break; sleep 0.1; done &&
    echo \"\$(hostname): training, log ~/mmjax/\$log\""
}

case "$action" in
  setup) setup ;;
  train) train "$@" ;;
  logs)
    on_all_workers 'for f in ~/mmjax/logs/train-*.log; do echo "== $f"; tail -n 20 "$f"; done'
    ;;
  stop)
    on_all_workers 'touch ~/mmjax/logs/STOP; for f in ~/mmjax/logs/train-*.pid; do
      kill -TERM "$(cat "$f")" 2>/dev/null || true; done'
    ;;
  watch)
    if (($# == 0)) || [[ -z "${MMJAX_TPU_CREATE_FLAGS:-}" ]]; then
      echo 'watch needs TRAIN_ARG... and MMJAX_TPU_CREATE_FLAGS (see usage).' >&2
      exit 2
    fi
    read -r -a create <<< "$MMJAX_TPU_CREATE_FLAGS"
    while :; do
      state="$(gcloud compute tpus tpu-vm describe "$name" --zone="$zone" "${extra[@]}" \
        --format='value(state)' 2>/dev/null || echo MISSING)"
      echo "$(date -u +%FT%TZ) $name: $state"
      if [[ "$state" == PREEMPTED || "$state" == TERMINATED || "$state" == MISSING ]]; then
        if [[ "$state" != MISSING ]]; then
          gcloud compute tpus tpu-vm delete "$name" --zone="$zone" "${extra[@]}" --quiet || true
        fi
        if ! { gcloud compute tpus tpu-vm create "$name" --zone="$zone" "${create[@]}" \
                 "${extra[@]}" && setup && train "$@"; }; then
          echo 'recreating the slice failed; trying again later' >&2
        fi
      fi
      sleep "${MMJAX_WATCH_SECONDS:-300}"
    done
    ;;
  *)
    usage >&2
    exit 2
    ;;
esac
