#!/usr/bin/env bash
# GPU check for the high-resolution engine (docs/benchmarks.md, "GPU"): GCA/HOP parity GPU vs CPU (float32
# and half), 6000 px GCA end to end with peak GPU memory, and the engine's phases.  Needs a CUDA GPU, torch
# built for it, mattekit installed, and ../shared beside the checkout (or MATTEKIT_SHARED).  About 3-5
# minutes on one H100/H200, most of it preparing the 6000 px PNGs once and the CPU side of the parity check;
# the whole script is stopped after 8 minutes.
#
#   bash benchmarks/gpu_check.sh [--rated-tflops FP32 FP16] [--out gpu-check.json]
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 480 python benchmarks/gpu_check.py "$@"
