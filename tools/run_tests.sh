#!/usr/bin/env bash
# README command 2: set up the pinned environment (first time only) and run the tests.
#   bash tools/run_tests.sh [extra pytest args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/bootstrap.sh"
cd "$ROOT"
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0 PYTHONHASHSEED=0
exec "${LFL_VENV:-$ROOT/.venv}/bin/python" -m pytest -q "$@"
