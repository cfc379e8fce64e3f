#!/usr/bin/env bash
# Distributed evaluation with torchrun (gloo on CPU, nccl on GPU per config):
#   bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py options]
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 CONFIG CHECKPOINT NUM_PROCS [tools/test.py options]" >&2
  exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROCS=$3
shift 3
exec bash "$(dirname "$0")/dist_launch.sh" tools/test.py "$NPROCS" \
  "$CONFIG" "$CHECKPOINT" "$@"
