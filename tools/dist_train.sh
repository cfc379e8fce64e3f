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
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
cd "$(dirname "$0")/.."
exec python -m torch.distributed.run \
  --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
  --nproc_per_node="$NPROCS" --master_port="$PORT" \
  tools/train.py "$CONFIG" --launcher pytorch "$@"
