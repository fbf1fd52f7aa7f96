#!/usr/bin/env bash
# Runs segjax on every worker of a Cloud TPU VM (a single host or a pod slice).
#
#   launch/tpu_vm.sh --name=segjax-v5e --zone=us-west4-a --accelerator=v5litepod-16 -- \
#       --config=configs/semantic.py --workdir=/mnt/shared/run1
#
# Creates the TPU VM unless it exists, copies this checkout (git archive of HEAD) to every worker,
# installs it with JAX for TPU, and starts the same `python -m segjax.main ... --distributed` on all
# workers at once: JAX finds the other workers from the TPU metadata. The workdir must be a
# filesystem every worker sees (Filestore/NFS or a gcsfuse mount), since all workers write one
# Orbax checkpoint together.
#
# --dry-run prints the commands instead of running them. Other options:
#   --project=P  --version=tpu-ubuntu2204-base  --spot  --no-create  --no-install
set -euo pipefail

name="" zone="" accelerator="" project="" version="tpu-ubuntu2204-base"
dry_run=0 spot=0 create=1 install=1
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --name=*) name="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --accelerator=*) accelerator="${1#*=}" ;;
    --project=*) project="${1#*=}" ;;
    --version=*) version="${1#*=}" ;;
    --spot) spot=1 ;;
    --no-create) create=0 ;;
    --no-install) install=0 ;;
    --dry-run) dry_run=1 ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    *) echo "tpu_vm.sh: unknown option '$1'; segjax arguments go after --." >&2; exit 2 ;;
  esac
  shift
done
segjax_args=("$@")

[[ -n "$name" && -n "$zone" ]] || { echo "tpu_vm.sh: --name and --zone are required." >&2; exit 2; }
[[ ${#segjax_args[@]} -gt 0 ]] || { echo "tpu_vm.sh: give segjax's arguments after --, e.g. -- --config=configs/semantic.py --workdir=DIR." >&2; exit 2; }

gcloud_tpu=(gcloud compute tpus tpu-vm)
where=(--zone="$zone")
[[ -n "$project" ]] && where+=(--project="$project")

show() {  # one line a shell can run: words with spaces or quotes are single-quoted
  local out="" word
  for word in "$@"; do
    if [[ "$word" =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then out+="$word "; else out+="'${word//\'/\'\\\'\'}' "; fi
  done
  echo "${out% }"
}
run() {  # prints the command in dry-run mode, runs it otherwise
  if (( dry_run )); then show "$@"; else "$@"; fi
}

if (( create )); then
  [[ -n "$accelerator" ]] || { echo "tpu_vm.sh: --accelerator is required to create a TPU VM (or pass --no-create)." >&2; exit 2; }
  create_cmd=("${gcloud_tpu[@]}" create "$name" "${where[@]}" --accelerator-type="$accelerator" --version="$version")
  (( spot )) && create_cmd+=(--spot)
  if (( dry_run )); then
    echo "# create unless '$name' exists:"
    run "${create_cmd[@]}"
  elif ! "${gcloud_tpu[@]}" describe "$name" "${where[@]}" >/dev/null 2>&1; then
    run "${create_cmd[@]}"
  else
    echo "tpu_vm.sh: reusing the existing TPU VM '$name'."
  fi
fi

if (( install )); then
  repo_root="$(cd "$(dirname "$0")/.." && pwd)"
  archive="${TMPDIR:-/tmp}/segjax-$$.tar.gz"
  run git -C "$repo_root" archive --format=tar.gz --output="$archive" HEAD
  run "${gcloud_tpu[@]}" scp "$archive" "$name:segjax.tar.gz" "${where[@]}" --worker=all
  run "${gcloud_tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command="rm -rf ~/segjax && mkdir -p ~/segjax && tar -xzf ~/segjax.tar.gz -C ~/segjax && python3 -m pip install -q -e ~/segjax 'jax[tpu]'"
  (( dry_run )) || rm -f "$archive"
fi

printf -v quoted '%q ' "${segjax_args[@]}"
run "${gcloud_tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command="cd ~/segjax && python3 -m segjax.main --distributed ${quoted% }"
