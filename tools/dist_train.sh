#!/usr/bin/env bash
# Data-parallel training on one machine with torchrun:
#   bash tools/dist_train.sh CONFIG NUM_PROCS [tools/train.py arguments ...]
# e.g. bash tools/dist_train.sh projects/tdfusion/configs/tdfusion_yolov8_m3fd.py 4 --resume
# Each process sees its own shard of every epoch plan; gradients of F, G and T are
# averaged before every optimiser step (model_wrapper_cfg = GradientAveragingWrapper),
# and the learner averages the inner gradient inside the differentiable inner step and
# the hypergradient (learnable_fusion_loss/meta/distributed.py). So a meta or fusion
# step equals the single-process one on the joined batch of NUM_PROCS x batch_size
# (exactly for nets without BatchNorm statistics, which stay per process).
# tests/test_distributed.py checks the learner; the engine path through this script is
# not yet compared with tools/train.py.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 CONFIG NUM_PROCS [train.py args ...]" >&2
  exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-${LFL_VENV:-$ROOT/.venv}/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PYTHONPATH="$ROOT:${PYTHONPATH:-}" exec "$PYTHON" -m torch.distributed.run \
  --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
  --nproc_per_node="$NPROC" --master_port="$PORT" \
  "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "$@"
