#!/usr/bin/env bash
# README command 1: set up the pinned environment (first time only), then run the
# main job on the bundled data in ../shared/data: TDFusion's mini detection config
# (YOLOv8n on MSRS pairs), trained with tools/train.py and evaluated with tools/test.py.
#   bash tools/run_main.sh [WORK_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/bootstrap.sh"
cd "$ROOT"
PY="${LFL_VENV:-$ROOT/.venv}/bin/python"
CONFIG="${LFL_MAIN_CONFIG:-projects/tdfusion/configs/tdfusion_yolov8_msrsdet_mini.py}"
WORK_DIR="${1:-work_dirs/main}"
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR"
CKPT="$(cat "$WORK_DIR/last_checkpoint")"
"$PY" tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR/test" --out "$WORK_DIR/test/results.json"
echo "fused images, weight maps and the metrics table: $WORK_DIR/test"
