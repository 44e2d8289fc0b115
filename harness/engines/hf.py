"""The Hugging Face transformers engine: batched ``generate`` (greedy or sampled, chat templates, LoRA
adapters) and continuation log-likelihoods, on CPU or GPU."""
from __future__ import annotations

import functools
import hashlib
import time
from pathlib import Path
from typing import Any, Sequence

from harness.engines import register_engine
from harness.engines.base import Completion, EngineOptions, Prompt, ProgressFn, SamplingParams
from harness.engines.hf_kv_cache import cache_field, common_prefix_len, extend, plain_dynamic, score, select_rows
from harness.engines.identity import identity_string, local_identity
from harness.engines.torch_device import pick_device, pick_dtype_name, torch


#: Bumped when the token ids this engine feeds the model change for the same prompt (part of the identity, so
#: no cached output made under an older encoding is reused). 2: lm-eval's hf-backend encoding (BOS, split).
ENCODING_VERSION = "2"


def _inference_mode(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.inference_mode():
            return fn(*args, **kwargs)

    return wrapper


# Below this many parameters a CPU model generates fastest on one thread (see HFEngine.__init__).
SMALL_MODEL_PARAMS = 50_000_000
# generate() runs a prefix this long or longer that every prompt of a batch shares once (a few-shot prefix).
GEN_PREFIX_MIN = 64
# ... and only when it is at least this many times the generation budget (prefill-bound batches).
GEN_PREFIX_PER_NEW_TOKEN = 4


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
        self.dtype_name = pick_dtype_name(dtype, self.device)
        self.parts = local_identity(model, adapter)
        self.identity = identity_string("hf", self.parts, self._settings(self.device, self.dtype_name))
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own rich bars report progress; transformers' tqdm bars are noise
        self.tokenizer = AutoTokenizer.from_pretrained(self.adapter or self.model_path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            self.model_path, dtype=getattr(torch, self.dtype_name)
        ).to(self.device)
        if self.adapter:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, self.adapter)
            if merge_adapter:  # merged LoRA weights generate faster and give the same outputs
                self.model = self.model.merge_and_unload()
        self.model.eval()
        #: Run a shared context once and reuse its KV cache: the continuations of one context (loglikelihood)
        #: and a few-shot prefix every prompt of a batch shares (generate). Switched off by itself for a model
        #: whose cache cannot be copied row by row (sliding-window or recurrent layers).
        self.prefix_reuse = True
        if self.device == "cpu" and sum(p.numel() for p in self.model.parameters()) < SMALL_MODEL_PARAMS:
            # A small model's matrices are too small to split across threads: with more than one thread, OpenMP
            # workers spin and contend with every other busy process (graders, sandboxes). Measured on 2 cores at
            # load 5-10 (bench/engines.py --threads 1,2), a 0.55M-parameter Llama: log-likelihood 7-11x and
            # greedy generation 5-10x slower on 2 threads than on 1.
            torch.set_num_threads(1)

    @property
    def max_length(self) -> int:
        """The model's context length, found as lm-eval's HFLM finds it (config, then tokenizer, else 2048)."""
        for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
            if hasattr(self.model.config, attr):
                return int(getattr(self.model.config, attr))
        limit = self.tokenizer.model_max_length
        return 2048 if limit >= 1e29 else int(limit)

    # ---- identity ------------------------------------------------------------------------------------
    @staticmethod
    def _settings(device: str, dtype_name: str) -> dict[str, str]:
        # Numerics differ between CPU and GPU kernels and between dtypes: both are part of what made an output.
        return {"device": "cuda" if device.startswith("cuda") else device, "dtype": dtype_name,
                "encoding": ENCODING_VERSION}

    @classmethod
    def identify(cls, model: str | Path, adapter: str | Path | None = None, *, dtype: str = "auto",
                 device: str = "auto", options: HFOptions | None = None) -> str:
        dev = pick_device(device)
        return identity_string("hf", local_identity(model, adapter), cls._settings(dev, pick_dtype_name(dtype, dev)))

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

    def _encode(self, text: str, chat: bool = False) -> list[int]:
        """Token ids as lm-eval's hf backend would feed them (``HFLM.tok_encode``), so that "the same as lm-eval"
        holds for model input and not only for scoring.

        - chat-rendered text: the template already holds every special token the model wants (a Llama-3 template
          writes ``<|begin_of_text|>`` itself), so nothing is added -- as ``apply_chat_template(tokenize=True)``.
        - plain text: the tokenizer's own special tokens (BOS for Llama-style tokenizers, nothing for Qwen/GPT-2
          style ones), unless the text already starts with the BOS string (lm-eval's ``has_bos_prefix`` check).
        """
        if chat:
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        prefix = self.tokenizer.decode(self._prefix_token_id())
        return self.tokenizer(text, add_special_tokens=not (prefix and text.startswith(prefix)))["input_ids"]

    def _prefix_token_id(self) -> int:
        # lm-eval's HFLM.prefix_token_id: what stands in for an empty context.
        tok = self.tokenizer
        return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

    def _encode_pair(self, prompt: Prompt, cont: str, memo: dict | None = None) -> tuple[list[int], list[int]]:
        """(context ids, continuation ids) split exactly as lm-eval's ``LM.loglikelihood`` / ``_encode_pair``:
        trailing whitespace of the context moves to the continuation, the whole string is encoded and the
        continuation is what follows the context's own encoding; an empty context becomes the prefix token."""
        chat = not isinstance(prompt, str)
        ctx = self.render(prompt)
        if ctx == "":
            cont_ids = self.tokenizer(cont, add_special_tokens=False)["input_ids"]
            if cont_ids and cont_ids[0] == self._prefix_token_id():
                return cont_ids[:1], cont_ids[1:]
            return [self._prefix_token_id()], cont_ids
        n_space = len(ctx) - len(ctx.rstrip())
        if n_space:
            ctx, cont = ctx[:-n_space], ctx[-n_space:] + cont
        whole = self._encode(ctx + cont, chat)
        if memo is None:
            ctx_ids = self._encode(ctx, chat)
        else:  # every choice of a question encodes the same context
            if (ctx, chat) not in memo:
                memo[(ctx, chat)] = self._encode(ctx, chat)
            ctx_ids = memo[(ctx, chat)]
        if len(whole) <= len(ctx_ids):
            # The continuation merged wholly into the context's last token, so lm-eval's split leaves it nothing
            # to score (it returns 0.0): score the whole string's last token given the rest instead.
            return (whole[:-1], whole[-1:]) if len(whole) > 1 else ([self._prefix_token_id()], whole)
        return ctx_ids, whole[len(ctx_ids):]

    # ---- generation ----------------------------------------------------------------------------------
    @_inference_mode
    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams, progress: ProgressFn | None = None
    ) -> list[list[Completion]]:
        texts = [self.render(p) for p in prompts]
        encoded = [self._encode(t, chat=not isinstance(p, str)) for p, t in zip(prompts, texts)]
        room = self.max_length - params.max_new_tokens
        if room > 0:  # as lm-eval: a prompt longer than the room the budget leaves loses its start
            encoded = [e[-room:] if len(e) > room else e for e in encoded]
        out: list[list[Completion] | None] = [None] * len(texts)
        pad_id = self.tokenizer.pad_token_id
        eos_ids = self._eos_ids()
        for idx in self._generation_batches(encoded, params.n, params.max_new_tokens):
            t0 = time.perf_counter()
            # A few-shot prefix every prompt of the batch shares runs once, on one row; its KV cache, copied to
            # every row, stands in for it. Rows are then [prefix | padding | rest], so the padding is in the
            # middle; positions come from the attention mask, so the padding changes nothing.
            n_common = 0
            cache = None
            if self.prefix_reuse and params.n == 1 and len(idx) > 1:
                n_common = common_prefix_len([encoded[i] for i in idx], min(len(encoded[i]) for i in idx) - 1)
                # Only where prefill dominates (the prefix at least 4x the budget): a precaution, since a first
                # version that grouped prompts on any shared 64 tokens split synthetic_id into small batches and
                # ran 2x slower; reuse with full batches on decode-bound work is not measured yet.
                if n_common >= max(GEN_PREFIX_MIN, GEN_PREFIX_PER_NEW_TOKEN * params.max_new_tokens):
                    _, cache, _ = self._extend(None, None, [encoded[idx[0]][:n_common]], keep_logits=False)
                    if plain_dynamic(cache):
                        cache, _ = select_rows(cache, torch.ones((1, n_common), dtype=torch.long), [0] * len(idx))
                    else:
                        self.prefix_reuse, cache = False, None
                if cache is None:
                    n_common = 0
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):  # left padding (after any shared prefix): every continuation starts at width
                ids[row, :n_common] = torch.tensor(encoded[i][:n_common])
                mask[row, :n_common] = 1
                ids[row, width - len(encoded[i]) + n_common :] = torch.tensor(encoded[i][n_common:])
                mask[row, width - len(encoded[i]) + n_common :] = 1
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
                # Only the generated text is searched, as lm-eval does: transformers' own ``stop_strings`` also
                # looks into the prompt, and stops at once when a prompt ending in "\n" meets a "\n\n" stop.
                from transformers import StoppingCriteriaList

                kwargs["stopping_criteria"] = StoppingCriteriaList([stop_in_generated(self.tokenizer, params.stop,
                                                                                       width)])
            if cache is not None:
                kwargs[cache_field()] = cache
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

    def _generation_batches(self, encoded: list[list[int]], n: int, max_new_tokens: int) -> list[list[int]]:
        """Batches of prompt indices, longest first (similar lengths share a batch: less padding; memory errors
        show up early). With prefix reuse, prompts that open with the same few-shot prefix (long enough to be
        reused, see generate) are batched among themselves so that the batch shares it."""
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        chunks = lambda xs: [xs[k : k + self.batch_size] for k in range(0, len(xs), self.batch_size)]  # noqa: E731
        min_prefix = max(GEN_PREFIX_MIN, GEN_PREFIX_PER_NEW_TOKEN * max_new_tokens)
        if not (self.prefix_reuse and n == 1):
            return chunks(order)
        heads: dict[tuple[int, ...], list[int]] = {}
        for i in order:
            if len(encoded[i]) > min_prefix:
                heads.setdefault(tuple(encoded[i][:min_prefix]), []).append(i)
        # A group is batched apart only when its members share enough to be worth it: small groups mean small
        # batches (measured: synthetic_id split into 5 batches of 32 ran 2x slower).
        grouped = [idx for idx in heads.values() if len(idx) > 1
                   and common_prefix_len([encoded[i] for i in idx], min_prefix) >= min_prefix]
        in_group = {i for idx in grouped for i in idx}
        return [b for idx in grouped for b in chunks(idx)] + chunks([i for i in order if i not in in_group])

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
    @_inference_mode
    def loglikelihood(
        self, requests: Sequence[tuple[Prompt, str]], progress: ProgressFn | None = None
    ) -> list[tuple[float, bool]]:
        """Summed log-probability of each continuation given its context, on the tokens lm-eval's hf backend
        feeds (``context_ids + continuation_ids``).

        Requests that share a context (every choice of a multiple-choice question) run that context once and
        score their continuations on copies of its KV cache; a batch of contexts also runs the token prefix they
        all share (a few-shot primer) once. Scores equal the plain path's within float tolerance
        (tests/test_hf_prefix.py); a context used once, or a model whose cache cannot be copied row by row, takes
        the plain path."""
        out: list[tuple[float, bool] | None] = [None] * len(requests)
        seqs: list[tuple[list[int], int]] = []  # (tokens, n_ctx): score tokens[n_ctx:] given tokens[:n_ctx]
        groups: dict[tuple[int, ...], list[int]] = {}
        memo: dict[tuple[str, bool], list[int]] = {}
        for i, (prompt, cont) in enumerate(requests):
            ctx_ids, cont_ids = self._encode_pair(prompt, cont, memo)
            toks = ctx_ids + cont_ids
            if len(toks) > self.max_length + 1:  # as lm-eval: keep the last max_length + 1 tokens
                toks = toks[-(self.max_length + 1):]
                seqs.append((toks, max(1, len(toks) - len(cont_ids))))
                continue
            seqs.append((toks, len(ctx_ids)))
            groups.setdefault(tuple(ctx_ids), []).append(i)
        shared = [(list(ctx), idx) for ctx, idx in groups.items() if len(idx) > 1] if self.prefix_reuse else []
        in_shared = {i for _, idx in shared for i in idx}
        plain = [i for i in range(len(requests)) if i not in in_shared]
        if shared:
            plain += self._loglikelihood_shared(shared, seqs, out, progress)
        self._loglikelihood_plain(plain, seqs, out, progress)
        return out  # type: ignore[return-value]

    def _loglikelihood_plain(self, todo: list[int], seqs: list[tuple[list[int], int]],
                             out: list, progress: ProgressFn | None) -> None:
        order = sorted(todo, key=lambda i: -len(seqs[i][0]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            # The last token is only scored, never input (as lm-eval: a max_length + 1 sequence still fits).
            logits, _, _ = self._extend(None, None, [seqs[i][0][:-1] for i in idx], use_cache=False)
            for row, i in enumerate(idx):
                toks, n_ctx = seqs[i]
                out[i] = score(logits[row, n_ctx - 1 : len(toks) - 1], toks[n_ctx:])
            if progress:
                progress(len(idx))

    def _loglikelihood_shared(self, groups: list[tuple[list[int], list[int]]], seqs: list[tuple[list[int], int]],
                              out: list, progress: ProgressFn | None) -> list[int]:
        """Score groups of requests that share a context; returns the requests it could not score."""
        groups = sorted(groups, key=lambda g: -len(g[0]))
        for gi in range(0, len(groups), self.batch_size):
            batch = groups[gi : gi + self.batch_size]
            ctxs = [ctx for ctx, _ in batch]
            # 1. The token prefix every context of the batch shares (a few-shot primer), once, on one row; at least
            #    one token of each context is left for step 2, whose last logits score the first continuation token.
            n_common = common_prefix_len(ctxs, max(0, min(len(c) for c in ctxs) - 1)) if len(batch) > 1 else 0
            cache, mask = None, None
            if n_common >= 16:
                _, cache, mask = self._extend(None, None, [ctxs[0][:n_common]], keep_logits=False)
                if not plain_dynamic(cache):
                    self.prefix_reuse = False
                    return [i for _, idx in groups for i in idx]
                cache, mask = select_rows(cache, mask, [0] * len(batch))
            else:
                n_common = 0
            # 2. The rest of each context, one row per group.
            logits, cache, mask = self._extend(cache, mask, [ctx[n_common:] for ctx in ctxs])
            if not plain_dynamic(cache):
                self.prefix_reuse = False
                return [i for _, idx in groups for i in idx]
            last = [logits[g, len(ctx) - n_common - 1] for g, ctx in enumerate(ctxs)]
            # 3. Every continuation on a copy of its context's cache, batch_size rows at a time (longest first).
            rows = sorted(((g, i) for g, (_, idx) in enumerate(batch) for i in idx),
                          key=lambda r: -(len(seqs[r[1]][0]) - seqs[r[1]][1]))
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                conts = [seqs[i][0][seqs[i][1]:] for _, i in chunk]
                long = [r for r, c in enumerate(conts) if len(c) > 1]  # a one-token continuation needs no forward
                cont_logits = None
                if long:
                    c_cache, c_mask = select_rows(cache, mask, [chunk[r][0] for r in long])
                    cont_logits, _, _ = self._extend(c_cache, c_mask, [conts[r][:-1] for r in long], use_cache=False)
                pos = {r: k for k, r in enumerate(long)}
                for r, (g, i) in enumerate(chunk):
                    c = conts[r]
                    lg = last[g].unsqueeze(0)
                    if len(c) > 1:
                        lg = torch.cat([lg, cont_logits[pos[r], : len(c) - 1]], 0)
                    out[i] = score(lg, c)
                if progress:
                    progress(len(chunk))
        return []

    def _extend(self, cache: Any, mask: torch.Tensor | None, rows: list[list[int]], use_cache: bool = True,
                keep_logits: bool = True) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """hf_kv_cache.extend on this engine's model (a method, so tests can count the forward passes)."""
        return extend(self.model, self.tokenizer.pad_token_id, self.device, cache, mask, rows, use_cache=use_cache,
                      keep_logits=keep_logits)


def stop_in_generated(tokenizer: Any, stop: Sequence[str], prompt_width: int):
    """A StoppingCriteria that stops a row once its generated text (never the prompt) holds a stop string; the
    text is cut there later. (Built in a function so importing this module does not import transformers.)"""
    from transformers import StoppingCriteria

    class StopInGenerated(StoppingCriteria):
        def __init__(self) -> None:
            self.tokenizer, self.stop, self.width = tokenizer, list(stop), prompt_width
            # A stop string of c characters lies within the last c + 2 tokens (a token holds at least one
            # character once decoded; 2 more for byte-level pieces), as lm-eval's MultiTokenEOSCriteria looks back.
            self.lookback = max(len(x) for x in self.stop) + 2

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            tails = input_ids[:, max(self.width, input_ids.shape[1] - self.lookback) :].tolist()
            texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
            return torch.tensor([any(x in t for x in self.stop) for t in texts], dtype=torch.bool,
                                device=input_ids.device)

    return StopInGenerated()


def hash_text(text: str) -> int:
    """A process-independent hash (Python's hash() is salted per process)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)
