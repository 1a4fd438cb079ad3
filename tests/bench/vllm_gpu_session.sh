#!/usr/bin/env bash
# One device call of the vLLM GPU bench (tests/bench/vllm_gpu.py). The vLLM bundle travels in
# the two calls before (../shared/gpu/vllm-bundle.sh's header); this call carries
# .vllm-bundle/{xg,install.sh} and installs it, plus r1exp's wheels from .gpu_vllm/whl, into
# /tmp/site once per machine start (later calls on the warm machine reuse it).
#   bash tests/bench/vllm_gpu_session.sh --parts eval,generate
set -uo pipefail
OUT=${OUT:-/tmp/r1exp-vllm-out}
mkdir -p "$OUT" /tmp/vg
if [ ! -f /tmp/site/.r1exp-installed ]; then
    bash .vllm-bundle/install.sh || exit 1
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site /tmp/vl/deps/r1exp/*.whl || exit 1
    touch /tmp/site/.r1exp-installed
fi
export PYTHONPATH=/tmp/site:$PWD
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv \
    | tee "$OUT/nvidia-smi.txt"
python3 -m tests.bench.vllm_gpu --out /tmp/vg "$@" 2>&1 | tee -a "$OUT/bench.txt"
status=${PIPESTATUS[0]}
cp /tmp/vg/results.json "$OUT/results-$(date +%s).json" 2>/dev/null
(cd /tmp/vg && tar -czf "$OUT/logs-$(date +%s).tgz" ./*.log ./*/*.log 2>/dev/null)
exit "$status"
