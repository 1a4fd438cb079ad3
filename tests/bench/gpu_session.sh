#!/usr/bin/env bash
# One device call of the GPU benchmark: install the carried wheels, run the variants, keep the
# logs under $OUT (the device tool hands that folder back). From the repo root, with `.whl`
# carried (see docs/performance.md for the wheel list):
#   bash tests/bench/gpu_session.sh [python -m tests.bench.gpu arguments...]
# R1EXP_SKIP_WHEELS=1 skips the install (to test this script where the packages are present).
set -uo pipefail
OUT=${OUT:-/tmp/r1exp-gpu-out}
BENCH=${BENCH_DIR:-/tmp/r1exp-bench}
mkdir -p "$OUT" "$BENCH"
if [ -z "${R1EXP_SKIP_WHEELS:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,memory.used \
    --format=csv | tee "$OUT/nvidia-smi.txt"
python3 -m tests.bench.gpu --out "$BENCH" "$@" 2>&1 | tee "$OUT/bench.txt"
status=${PIPESTATUS[0]}
cp "$BENCH/results.json" "$OUT/" 2>/dev/null
(cd "$BENCH" && tar -czf "$OUT/logs.tgz" ./*.log 2>/dev/null)
exit "$status"
