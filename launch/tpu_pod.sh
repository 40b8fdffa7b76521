#!/usr/bin/env bash
# Trains on a Cloud TPU VM slice: the same command on every worker, which find each other
# through the TPU metadata (MMJAX_DISTRIBUTED=auto). See launch/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/tpu_pod.sh setup NAME ZONE
       launch/tpu_pod.sh train NAME ZONE -- TRAIN_ARG...
       launch/tpu_pod.sh stop  NAME ZONE

setup  copies this checkout (tracked files, as of HEAD) to ~/mmjax on every worker and
       installs requirements.txt with jax[tpu] into ~/mmjax/.venv.
train  runs `python -m mmjax.train TRAIN_ARG...` on every worker with MMJAX_DISTRIBUTED=auto,
       attached (run it inside tmux), logging to ~/mmjax/train.log too. The
       --workdir must be a directory every worker sees: a Filestore/NFS mount or a gcsfuse
       mount of a bucket, at the same path on each worker.
stop   sends SIGTERM to the training processes: they finish the step, checkpoint, exit 0.

Environment: GCLOUD_FLAGS (extra flags for gcloud, e.g. --project=P), MMJAX_REPO (a git URL
to clone on the workers instead of copying this checkout).

example:
  launch/tpu_pod.sh setup my-v5p-64 us-east5-a
  launch/tpu_pod.sh train my-v5p-64 us-east5-a -- --config=configs/imp_base.py \
      --workdir=/mnt/runs/imp_base
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

case "$action" in
  setup)
    if [[ -n "${MMJAX_REPO:-}" ]]; then
      on_all_workers "rm -rf ~/mmjax && git clone --depth=1 $(printf '%q' "$MMJAX_REPO") ~/mmjax"
    else
      archive="$(mktemp --suffix=.tar.gz)"
      trap 'rm -f "$archive"' EXIT
      git -C "$(dirname "$0")/.." archive --format=tar.gz -o "$archive" HEAD
      gcloud compute tpus tpu-vm scp "$archive" "$name:mmjax.tar.gz" --zone="$zone" --worker=all \
        "${extra[@]}"
      on_all_workers 'rm -rf ~/mmjax && mkdir ~/mmjax && tar -xzf ~/mmjax.tar.gz -C ~/mmjax'
    fi
    on_all_workers 'cd ~/mmjax && python3 -m venv .venv && .venv/bin/pip install -q -U pip &&
      .venv/bin/pip install -q -r requirements.txt "jax[tpu]"'
    ;;
  train)
    if (($# == 0)); then usage >&2; exit 2; fi
    args="$(printf '%q ' "$@")"
    on_all_workers "cd ~/mmjax && echo \$\$ > train.pid && exec env MMJAX_DISTRIBUTED=auto \
      .venv/bin/python -m mmjax.train $args > >(tee train.log) 2>&1"
    ;;
  stop)
    on_all_workers 'kill -TERM "$(cat ~/mmjax/train.pid)" 2>/dev/null || true'
    ;;
  *)
    usage >&2
    exit 2
    ;;
esac
