#!/usr/bin/env bash
# Multi-GPU training: tools/dist_train.sh CONFIG GPUS [tools/train.py options]
# Environment: NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG GPUS [train.py options]" >&2
  exit 2
fi
CONFIG=$1
GPUS=$2
shift 2
TOOLS=$(dirname "$0")
exec "${PYTHON:-python}" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" \
  --node_rank="${NODE_RANK:-0}" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --nproc_per_node="$GPUS" \
  --master_port="${PORT:-29500}" \
  "$TOOLS/train.py" "$CONFIG" --launcher pytorch "$@"
