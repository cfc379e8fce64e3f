#!/usr/bin/env bash
# Convergence runs of the zoo on the raccoon data (docs/model_zoo.md): every
# variant trained from scratch with one recipe and budget, the raccoon
# setting of configs/_base_/raccoon_setting.py (320 px, batch 4, AdamW 2e-4,
# EMA) cut to EPOCHS epochs (default 10 = 400 iterations), evaluated on the 40
# raccoon validation images at epochs 5 and 10.
#
#   bash tools/analysis/convergence_runs.sh [CONFIG ...]
#
# Default: the six raccoon variants below. Each run writes
# work_dirs/convergence/<config name>/ (log, scalars, checkpoints); the
# model-zoo table reads the last evaluation and the final training loss from
# there (python tools/analysis/model_zoo_table.py --runs-dir
# work_dirs/convergence). Benchmarks, not tests: ~10-25 minutes per run on
# 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
EPOCHS=${EPOCHS:-10}
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
  name=$(basename "$config" .py)
  echo "== $name: $EPOCHS epochs -> work_dirs/convergence/$name ($(date -u +%H:%M:%S))"
  start=$(date +%s)
  python tools/train.py "$config" --work-dir "work_dirs/convergence/$name" \
    --cfg-options train_cfg.max_epochs="$EPOCHS" train_cfg.val_interval=5 \
    randomness.seed=0
  echo "== $name done in $(( $(date +%s) - start )) s"
done
