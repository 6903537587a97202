#!/usr/bin/env bash
# The CamVid benchmark at full resolution on a GPU machine, from a clean
# clone:  bash benchmarks/gpu_full_resolution.sh CAMVID_DIR [camvid.py flags]
#
# 360x480 crops, ten levels a type (41 gears), a 4000-iteration base and
# 1000 iterations per method, the tuning-split protocol with its default
# grid points and three seeds of the main methods (--tune-points 1, the
# lighter profile of results/camvid.md). Writes
# benchmarks/results/camvid_360x480.{md,json,png}; stages are cached in
# work_dirs/benchmark_camvid_360x480, so a rerun resumes. Extra flags go to
# benchmarks/camvid.py (e.g. --quick for a smoke run, --methods ...).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: bash benchmarks/gpu_full_resolution.sh CAMVID_DIR [flags]}
shift
[ -x .venv/bin/python ] || make env
.venv/bin/python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this run is meant for a GPU (--quick runs on a CPU through benchmarks/camvid.py)')"
.venv/bin/python benchmarks/camvid.py "$data" --full-resolution \
    --base-iters 4000 --iters 1000 --tune-points 1 "$@"
