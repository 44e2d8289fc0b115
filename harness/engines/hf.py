"""The Hugging Face transformers engine: batched ``generate`` (greedy or sampled, chat templates, LoRA
adapters) and continuation log-likelihoods, on CPU or GPU."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from harness.engines import register_engine
from harness.engines.base import Completion, EngineOptions, Prompt, ProgressFn, SamplingParams
from harness.engines.identity import identity_string, local_identity

hf_logging.disable_progress_bar()  # our own rich bars report progress; transformers' tqdm bars are noise

# Below this many parameters a CPU model generates fastest on one thread (see HFEngine.__init__).
SMALL_MODEL_PARAMS = 50_000_000


def pick_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


class HFOptions(EngineOptions):
    #: Merge LoRA weights into the base for generation (faster, same outputs).
    merge_adapter: bool = True


@register_engine("hf")
class HFEngine:
    """transformers ``generate`` behind the Engine protocol."""

    Options = HFOptions

    def __init__(
        self,
        model: str | Path,
        adapter: str | Path | None = None,
        *,
        batch_size: int = 16,
        dtype: str = "auto",
        device: str = "auto",
        options: HFOptions | None = None,
    ) -> None:
        options = options or HFOptions()
        merge_adapter = options.merge_adapter
        self.model_path = str(model)
        self.adapter = str(adapter) if adapter else None
        self.batch_size = batch_size
        self.device = pick_device(device)
        self.dtype_name = str(pick_dtype(dtype, self.device)).removeprefix("torch.")
        self.parts = local_identity(model, adapter)
        self.identity = identity_string("hf", self.parts, self._settings(self.device, self.dtype_name))
        self.tokenizer = AutoTokenizer.from_pretrained(self.adapter or self.model_path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            self.model_path, dtype=pick_dtype(dtype, self.device)
        ).to(self.device)
        if self.adapter:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, self.adapter)
            if merge_adapter:  # merged LoRA weights generate faster and give the same outputs
                self.model = self.model.merge_and_unload()
        self.model.eval()
        if self.device == "cpu" and sum(p.numel() for p in self.model.parameters()) < SMALL_MODEL_PARAMS:
            # A small model's matrices are too small to split across threads: with more than one thread, OpenMP
            # workers spin and contend with every other busy process (graders, sandboxes), measured 10x slower.
            torch.set_num_threads(1)

    # ---- identity ------------------------------------------------------------------------------------
    @staticmethod
    def _settings(device: str, dtype_name: str) -> dict[str, str]:
        # Numerics differ between CPU and GPU kernels and between dtypes: both are part of what made an output.
        return {"device": "cuda" if device.startswith("cuda") else device, "dtype": dtype_name}

    @classmethod
    def identify(cls, model: str | Path, adapter: str | Path | None = None, *, dtype: str = "auto",
                 device: str = "auto", options: HFOptions | None = None) -> str:
        dev = pick_device(device)
        dtype_name = str(pick_dtype(dtype, dev)).removeprefix("torch.")
        return identity_string("hf", local_identity(model, adapter), cls._settings(dev, dtype_name))

    def describe(self) -> dict[str, Any]:
        return {"backend": "hf", "model": self.model_path, "adapter": self.adapter, "identity": self.identity,
                "parts": self.parts, "device": self.device, "dtype": self.dtype_name,
                "batch_size": self.batch_size}

    # ---- prompts -------------------------------------------------------------------------------------
    def render(self, prompt: Prompt) -> str:
        """Chat messages through the chat template (generation prompt appended); strings as they are."""
        if isinstance(prompt, str):
            return prompt
        return self.tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=False)

    def _encode(self, text: str) -> list[int]:
        # The chat template already holds any special tokens the model wants.
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # ---- generation ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams, progress: ProgressFn | None = None
    ) -> list[list[Completion]]:
        texts = [self.render(p) for p in prompts]
        encoded = [self._encode(t) for t in texts]
        # Longest first: similar lengths share a batch (less padding) and memory errors show up early.
        order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
        out: list[list[Completion] | None] = [None] * len(texts)
        pad_id = self.tokenizer.pad_token_id
        eos_ids = self._eos_ids()
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            t0 = time.perf_counter()
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):  # left padding so every row's continuation starts at `width`
                ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
                mask[row, width - len(encoded[i]) :] = 1
            kwargs = dict(
                max_new_tokens=params.max_new_tokens,
                pad_token_id=pad_id,
                eos_token_id=eos_ids,
                num_return_sequences=params.n,
            )
            if params.temperature > 0:
                kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
                # Seed per batch from the request seed and the batch's first prompt: same request, same samples.
                torch.manual_seed(params.seed * 1_000_003 + hash_text(texts[idx[0]]) % 1_000_003)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            if params.stop:
                kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
            gen = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), **kwargs)
            new = gen[:, width:].cpu()
            seconds = (time.perf_counter() - t0) / len(idx)
            for row, i in enumerate(idx):
                comps = []
                for k in range(params.n):
                    toks = new[row * params.n + k].tolist()
                    comps.append(self._completion(toks, eos_ids, params, len(encoded[i]), seconds))
                out[i] = comps
            if progress:
                progress(len(idx))
        return out  # type: ignore[return-value]

    def _eos_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(gen_eos, int):
            ids.add(gen_eos)
        elif isinstance(gen_eos, list):
            ids.update(gen_eos)
        return sorted(i for i in ids if i is not None)

    def _completion(self, toks: list[int], eos_ids: list[int], params: SamplingParams, n_prompt: int,
                    seconds: float) -> Completion:
        pad_id = self.tokenizer.pad_token_id
        # Cut at the first end-of-sequence; what follows is padding from other rows of the batch.
        cut = next((j for j, t in enumerate(toks) if t in eos_ids), None)
        finish = "stop" if cut is not None else "length"
        toks = toks[:cut] if cut is not None else [t for t in toks if t != pad_id or pad_id in eos_ids]
        text = self.tokenizer.decode(toks, skip_special_tokens=True)
        if params.stop:
            hits = [text.find(s) for s in params.stop if s in text]
            if hits:
                text, finish = text[: min(hits)], "stop"
        return Completion(text=text, finish_reason=finish, prompt_tokens=n_prompt, completion_tokens=len(toks),
                          seconds=seconds)

    # ---- log-likelihood ------------------------------------------------------------------------------
    @torch.inference_mode()
    def loglikelihood(
        self, requests: Sequence[tuple[Prompt, str]], progress: ProgressFn | None = None
    ) -> list[tuple[float, bool]]:
        pairs = []
        for prompt, cont in requests:
            ctx = self.render(prompt)
            # As lm-eval: trailing spaces of the context belong to the continuation, so the split is clean.
            n_space = len(ctx) - len(ctx.rstrip(" "))
            if n_space:
                ctx, cont = ctx[:-n_space], ctx[-n_space:] + cont
            whole = self._encode(ctx + cont)
            n_ctx = len(self._encode(ctx))
            if n_ctx >= len(whole):  # the continuation merged into the context's last token
                n_ctx = len(whole) - 1
            pairs.append((whole, n_ctx))
        order = sorted(range(len(pairs)), key=lambda i: -len(pairs[i][0]))
        out: list[tuple[float, bool] | None] = [None] * len(pairs)
        pad_id = self.tokenizer.pad_token_id
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = max(len(pairs[i][0]) for i in idx)
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                toks = pairs[i][0]
                ids[row, : len(toks)] = torch.tensor(toks)
                mask[row, : len(toks)] = 1
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
            for row, i in enumerate(idx):
                toks, n_ctx = pairs[i]
                target = torch.tensor(toks[n_ctx:])
                lp = logprobs[row, n_ctx - 1 : len(toks) - 1]
                total = lp.gather(1, target.unsqueeze(1)).sum().item()
                greedy = bool((lp.argmax(dim=-1) == target).all().item())
                out[i] = (total, greedy)
            if progress:
                progress(len(idx))
        return out  # type: ignore[return-value]


def hash_text(text: str) -> int:
    """A process-independent hash (Python's hash() is salted per process)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)
