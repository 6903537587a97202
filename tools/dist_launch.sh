#!/usr/bin/env bash
# Usage: tools/dist_launch.sh SCRIPT GPUS [SCRIPT arguments...]
# Runs tools/SCRIPT in GPUS processes per node with torchrun: the one launch
# line behind dist_train.sh, dist_test.sh and dist_select_params.sh.
# Environment: NNODES, NODE_RANK, PORT, MASTER_ADDR, PYTHON.
SCRIPT=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

# torchrun, run through the chosen interpreter so that its environment is used.
PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes=$NNODES \
    --node_rank=$NODE_RANK \
    --master_addr=$MASTER_ADDR \
    --nproc_per_node=$GPUS \
    --master_port=$PORT \
    "$(dirname "$0")/$SCRIPT" \
    "${@:3}"
