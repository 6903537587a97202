#!/usr/bin/env bash
# Usage: tools/dist_select_params.sh CONFIG GPUS [select_params.py options...]
# The selection runs once, on rank 0; the other ranks wait for its record.
# Environment: NNODES, NODE_RANK, PORT, MASTER_ADDR, PYTHON (dist_launch.sh).
exec "$(dirname "$0")/dist_launch.sh" select_params.py "$2" \
    "$1" --launcher pytorch "${@:3}"
