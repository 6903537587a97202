#!/usr/bin/env bash
# Usage: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options...]
# Environment: NNODES, NODE_RANK, PORT, MASTER_ADDR, PYTHON (dist_launch.sh).
exec "$(dirname "$0")/dist_launch.sh" test.py "$3" \
    "$1" "$2" --launcher pytorch "${@:4}"
