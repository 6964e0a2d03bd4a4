#!/usr/bin/env bash
# Drive a running service's V2 route with Triton's own load tool, perf_analyzer, on real digits.
#
#   scripts/perf-analyzer.sh                       # against 127.0.0.1:8000, batch 8
#   scripts/perf-analyzer.sh -b 1 --concurrency-range 1:4   # any perf_analyzer options
#
# perf_analyzer has no package of its own on PyPI; the tritonclient 2.41.0 wheel still carries
# the binary (later wheels do not). It links libb64 (Debian: libb64-0d) and the CUDA runtime
# (PyPI: nvidia-cuda-runtime-cu12, a 1 MB library; no GPU is used). Everything is unpacked
# into .perf-analyzer/ in the repository (ignored by git), once.
#
# The input is real MNIST test digits (python -m bench.perf_analyzer_data): perf_analyzer's
# default input, random FP32 bytes, is nearly all NaN or outside 0..1, which the service
# refuses with a 400, and perf_analyzer stops at the first one.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
dir=.perf-analyzer
# DIGITS_URL as the digits CLI reads it (http://host:port); perf_analyzer wants host:port.
url=${DIGITS_URL:-http://127.0.0.1:8000}
url=${url#http://}
url=${url%/}
binary=$dir/tritonclient-2.41.0.data/data/bin/perf_analyzer

if ! ldconfig -p | grep -q libb64.so.0d; then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq libb64-0d >/dev/null
fi
if [ ! -x "$binary" ]; then
    mkdir -p "$dir"
    "$python" -m pip download -q --no-deps -d "$dir" \
        tritonclient==2.41.0 nvidia-cuda-runtime-cu12==12.4.127
    unzip -q -o "$dir"/tritonclient-2.41.0-*.whl 'tritonclient-2.41.0.data/data/bin/perf_analyzer' -d "$dir"
    unzip -q -o "$dir"/nvidia_cuda_runtime_cu12-*.whl 'nvidia/cuda_runtime/lib/*' -d "$dir"
    chmod +x "$binary"
fi
[ -s "$dir/digits.json" ] || "$python" -m bench.perf_analyzer_data --count 100 >"$dir/digits.json"
# The model keeps its own name in V2 paths: ask the service rather than assume one.
model=$("$python" -c 'import sys, httpx; print(httpx.get(f"http://{sys.argv[1]}/model").json()["name"])' "$url")

export LD_LIBRARY_PATH="$PWD/$dir/nvidia/cuda_runtime/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ $# -gt 0 ] || set -- -b 8 --concurrency-range 1:4
exec "$binary" -m "$model" -u "$url" -i http --input-data "$dir/digits.json" "$@"
