#!/usr/bin/env bash
# Distributed training with torchrun (gloo on CPU, nccl on GPU per config):
#   bash tools/dist_train.sh CONFIG NUM_PROCS [train.py options]
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG NUM_PROCS [tools/train.py options]" >&2
  exit 2
fi
CONFIG=$1
NPROCS=$2
shift 2
exec bash "$(dirname "$0")/dist_launch.sh" tools/train.py "$NPROCS" \
  "$CONFIG" "$@"
