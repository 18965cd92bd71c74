#!/usr/bin/env bash
# README command 1: set up the pinned environment (first time only), then run the
# main job on the bundled data in ../shared/data: the zoo model tdfusion_msrsdet_cpu
# (TDFusion trained with the CPU recipe) fuses the 60 msrs_det test pairs at 480x640,
# in colour, writes them with both weight maps, and prints its fusion metrics beside
# IR alone, VIS alone, the average and the max on the same pairs (about 3.5 minutes).
#   bash tools/run_main.sh [WORK_DIR]                 # from the zoo model
#   LFL_MAIN_TRAIN=1 bash tools/run_main.sh [WORK_DIR] # train the CPU recipe first (~9 min)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/bootstrap.sh"
cd "$ROOT"
PY="${LFL_VENV:-$ROOT/.venv}/bin/python"
WORK_DIR="${1:-work_dirs/main}"
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0
if [[ "${LFL_MAIN_TRAIN:-0}" == "1" ]]; then
  CONFIG="${LFL_MAIN_CONFIG:-projects/tdfusion/configs/tdfusion_yolov8_msrsdet_cpu.py}"
  # a second call continues (or finds finished) the run it started: train.py refuses
  # a work dir with checkpoints unless told --resume or --overwrite
  RESUME=()
  [[ -f "$WORK_DIR/train/last_checkpoint" ]] && RESUME=(--resume)
  "$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR/train" "${RESUME[@]}"
  "$PY" projects/tdfusion/tools/main_job.py --work-dir "$WORK_DIR" \
    --checkpoint "$(cat "$WORK_DIR/train/last_checkpoint")"
else
  "$PY" projects/tdfusion/tools/main_job.py --work-dir "$WORK_DIR"
fi
