#!/usr/bin/env bash
# Convergence runs of the zoo on the raccoon data (docs/model_zoo.md): every
# variant trained from scratch with one recipe and budget, the raccoon
# setting of configs/_base_/raccoon_setting.py (320 px, batch 4, AdamW 2e-4,
# EMA) cut to EPOCHS epochs (default 10 = 400 iterations), evaluated on the 40
# raccoon validation images at epochs 5 and 10.
#
#   bash tools/analysis/convergence_runs.sh [CONFIG ...]
#   SEEDS="0 1 2" bash tools/analysis/convergence_runs.sh CONFIG ...
#
# Default: the six raccoon variants below, seed 0. Each run writes
# work_dirs/convergence/<config name>/ (seed 0) or <config name>_seed<N>/
# (log, scalars, checkpoints; tools/analysis/seed_summary.py gives the mean
# and spread over seeds at each evaluation); the
# model-zoo table reads the last evaluation and the final training loss from
# there (python tools/analysis/model_zoo_table.py --runs-dir
# work_dirs/convergence). Benchmarks, not tests: ~10-25 minutes per run on
# 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
EPOCHS=${EPOCHS:-10}
SEEDS=${SEEDS:-0}
CONFIGS=("$@")
if [ ${#CONFIGS[@]} -eq 0 ]; then
  CONFIGS=(configs/rtdetr_r18vd_raccoon.py
           configs/rtdetr_mnv4_conv_s_bifpn_raccoon.py
           configs/rtdetr_riformer_s12_raccoon.py
           configs/rtdetr_r18vd_dysample_raccoon.py
           configs/rtdetr_rmt_t_raccoon.py
           configs/rtdetr_bhvit_raccoon.py)
fi
for config in "${CONFIGS[@]}"; do
  for seed in $SEEDS; do
    name=$(basename "$config" .py)
    [ "$seed" = 0 ] || name="${name}_seed${seed}"
    echo "== $name: $EPOCHS epochs, seed $seed -> work_dirs/convergence/$name ($(date -u +%H:%M:%S))"
    start=$(date +%s)
    python tools/train.py "$config" --work-dir "work_dirs/convergence/$name" \
      --cfg-options train_cfg.max_epochs="$EPOCHS" train_cfg.val_interval=5 \
      randomness.seed="$seed"
    echo "== $name done in $(( $(date +%s) - start )) s"
  done
done
