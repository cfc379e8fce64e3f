#!/usr/bin/env bash
# torchrun of a tools/ script on NUM_PROCS processes per node (gloo on CPU,
# nccl on GPU per config); what tools/dist_train.sh and tools/dist_test.sh
# run:
#   bash tools/dist_launch.sh SCRIPT NUM_PROCS [script arguments]
# NNODES, NODE_RANK, PORT and MASTER_ADDR set a multi-node run.
set -euo pipefail
SCRIPT=$1
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
  "$SCRIPT" "$@" --launcher pytorch
