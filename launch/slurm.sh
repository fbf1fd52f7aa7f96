#!/usr/bin/env bash
# Submits a multi-node GPU run of segjax to SLURM: one process per GPU, all in one JAX runtime.
#
#   launch/slurm.sh --nodes=2 --gpus_per_node=8 --partition=gpu -- \
#       --config=configs/semantic.py --workdir=/shared/runs/run1
#
# Writes a batch script and hands it to sbatch. Its srun starts `python -m segjax.main
# --distributed ...` once per GPU; JAX reads the coordinator, the process count and each process's
# id and GPU from SLURM's variables. Run it from the checkout the nodes should use (a shared
# filesystem, with segjax installed in the Python given by --python); the workdir must be shared
# too, since all processes write one Orbax checkpoint together. Two minutes before the time limit
# (and on scancel or preemption) SLURM sends SIGTERM: every process stops at the same step, saves it
# and exits with status 75 (stopped, resumable); submitting the same job again continues the run.
#
# --dry-run prints the sbatch command and the batch script instead of submitting. Other options:
#   --time=HH:MM:SS  --job_name=NAME  --account=A  --python=python3  --cpus_per_gpu=N
set -euo pipefail

nodes=1 gpus_per_node=8 partition="" time_limit="04:00:00" job_name="segjax" account=""
python="python3" cpus_per_gpu=8 dry_run=0
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --nodes=*) nodes="${1#*=}" ;;
    --gpus_per_node=*) gpus_per_node="${1#*=}" ;;
    --partition=*) partition="${1#*=}" ;;
    --time=*) time_limit="${1#*=}" ;;
    --job_name=*) job_name="${1#*=}" ;;
    --account=*) account="${1#*=}" ;;
    --python=*) python="${1#*=}" ;;
    --cpus_per_gpu=*) cpus_per_gpu="${1#*=}" ;;
    --dry-run) dry_run=1 ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    *) echo "slurm.sh: unknown option '$1'; segjax arguments go after --." >&2; exit 2 ;;
  esac
  shift
done
[[ $# -gt 0 ]] || { echo "slurm.sh: give segjax's arguments after --, e.g. -- --config=configs/semantic.py --workdir=DIR." >&2; exit 2; }
for n in "$nodes" "$gpus_per_node" "$cpus_per_gpu"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "slurm.sh: '$n' is not a positive whole number." >&2; exit 2; }
done

repo_root="$(cd "$(dirname "$0")/.." && pwd)"
printf -v segjax_args '%q ' "$@"
printf -v python_q '%q' "$python"
printf -v repo_q '%q' "$repo_root"

script="#!/bin/bash
#SBATCH --job-name=${job_name}
#SBATCH --nodes=${nodes}
#SBATCH --ntasks-per-node=${gpus_per_node}
#SBATCH --gpus-per-node=${gpus_per_node}
#SBATCH --cpus-per-task=${cpus_per_gpu}
#SBATCH --time=${time_limit}
#SBATCH --signal=TERM@120
#SBATCH --output=${job_name}-%j.out
${partition:+#SBATCH --partition=${partition}
}${account:+#SBATCH --account=${account}
}set -euo pipefail
cd ${repo_q}
# One task per GPU: JAX's SLURM detection gives each process the GPU of its local rank.
srun --kill-on-bad-exit=1 ${python_q} -m segjax.main --distributed ${segjax_args% }"

if (( dry_run )); then
  echo "# sbatch, with this batch script on its standard input:"
  echo "sbatch"
  echo "$script"
else
  command -v sbatch >/dev/null || { echo "slurm.sh: sbatch not found; run this on a SLURM login node (or use --dry-run)." >&2; exit 1; }
  sbatch <<<"$script"
fi
