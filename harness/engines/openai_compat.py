"""An engine for any OpenAI-compatible server (vLLM, SGLang, TGI, ``transformers serve``, OpenAI itself).

Chat prompts go to ``/chat/completions`` (the server applies its chat template), plain strings to
``/completions``. Requests run concurrently (``concurrency`` in flight) on the engine's own event loop through the
official ``openai`` SDK with its retries switched off, so that one policy (http_limits: backoff with jitter,
Retry-After, timeouts, rpm/tpm limits, usage and cost) covers this engine and the anthropic one alike. The SDK
is used rather than bare HTTP for its typed errors, auth and base-URL handling, and because it tracks the API.

Log-likelihoods use the completions endpoint with ``echo`` + ``logprobs`` (prompt log-probabilities; vLLM and
OpenAI's legacy completions support it); a server that returns none raises EngineUnavailable in one line.

The API key is read from the environment variable named by ``api_key_env`` when the engine is built, and is
never part of ``describe()``, the identity, a log line or an exception message.
"""
from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any, Literal, Sequence

from harness.engines import EngineUnavailable, register_engine
from harness.engines.base import Completion, Prompt, ProgressFn, SamplingParams
from harness.engines.event_loop import gather_ordered
from harness.engines.http_limits import (APIRequestError, AsyncHTTPEngine, Failure, HTTPEngineOptions, host_of,
                                         one_line, status_failure)
from harness.engines.identity import folder_digests, identity_string, local_identity

import openai  # noqa: E402 - after the harness imports so a missing SDK names the [api] extra


class OpenAIOptions(HTTPEngineOptions):
    #: "auto": chat messages -> chat endpoint, strings -> completions; "chat": strings sent as one user message;
    #: "completions": strings only (chat prompts need the chat template, which only the server has).
    endpoint: Literal["auto", "chat", "completions"] = "auto"


def api_identity_parts(model: str | Path, adapter: str | Path | None, options: HTTPEngineOptions,
                       default_host: str) -> dict[str, Any]:
    """What names a served model: host, served name, declared revision; for a local folder the digests of the
    weights, tokenizer and chat template too (the server was started from it), and of an adapter."""
    if adapter is not None and not options.served_model:
        raise EngineUnavailable("an API engine cannot load a local adapter: serve it (e.g. vLLM --lora-modules "
                                "NAME=PATH) and pass engine.options.served_model=NAME")
    p = Path(model).expanduser()
    if p.is_dir():
        parts = local_identity(p, adapter)
    else:
        parts = {"name": str(model)}
        if adapter is not None:
            parts["adapter"] = folder_digests(adapter)["weights"]
    parts["served_model"] = options.served_model
    parts["host"] = default_host if options.base_url is None else host_of(options.base_url)
    if options.model_revision:
        parts["revision"] = options.model_revision
    return parts


@register_engine("openai")
class OpenAIEngine(AsyncHTTPEngine):
    """OpenAI-compatible HTTP server behind the Engine protocol."""

    Options = OpenAIOptions

    def __init__(self, model: str | Path, adapter: str | Path | None = None, *, batch_size: int = 16,
                 dtype: str = "auto", device: str = "auto", options: OpenAIOptions | None = None) -> None:
        self.options = options or OpenAIOptions()
        self.model = str(model)
        self.adapter = str(adapter) if adapter else None
        self.identity = self.identify(model, adapter, dtype=dtype, device=device, options=self.options)
        self._init_http(self.options)
        self._served = self.options.served_model or (None if Path(self.model).expanduser().is_dir()
                                                     else self.model)
        self._ll_supported: bool | None = None

    # ---- identity ------------------------------------------------------------------------------------
    @classmethod
    def identify(cls, model: str | Path, adapter: str | Path | None = None, *, dtype: str = "auto",
                 device: str = "auto", options: OpenAIOptions | None = None) -> str:
        options = options or OpenAIOptions()
        return identity_string("openai", api_identity_parts(model, adapter, options, host_of(None)), {})

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {"backend": "openai", "model": self.model, "adapter": self.adapter, "identity": self.identity,
                "served_model": self._served or o.served_model, "host": host_of(o.base_url),
                "model_revision": o.model_revision, "endpoint": o.endpoint,
                "api_key_env": o.api_key_env, "api_key_set": self._secret is not None,
                "timeout_s": o.timeout_s, "max_retries": o.max_retries, "concurrency": o.concurrency,
                "rpm": o.rpm, "tpm": o.tpm, "price_per_mtok_in": o.price_per_mtok_in,
                "price_per_mtok_out": o.price_per_mtok_out, "usage": self.usage.to_dict()}

    def render(self, prompt: Prompt) -> Prompt:
        """The messages themselves (the server applies its chat template), or the string as it is."""
        return prompt if isinstance(prompt, str) else [dict(m) for m in prompt]

    # ---- plumbing ------------------------------------------------------------------------------------
    def _what(self) -> str:
        return f"openai {host_of(self.options.base_url)} {self._served or self.model}"

    def _get_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                base_url=self.options.base_url, api_key=self._secret or "EMPTY", max_retries=0,
                timeout=self.options.timeout_s + 5)  # our own wait_for limit fires first
        return self._client

    def _classify(self, e: BaseException) -> Failure:
        if isinstance(e, openai.APIStatusError):
            detail = _error_detail(e)
            hint = {401: f"set ${self.options.api_key_env} to a valid key",
                    403: f"the key in ${self.options.api_key_env} may not use this model",
                    404: "check base_url (it usually ends in /v1) and served_model"}.get(e.status_code, "")
            return status_failure(e.status_code, e.response.headers, detail, hint)
        if isinstance(e, openai.APITimeoutError):
            return Failure("timeout", True, "request timed out")
        if isinstance(e, openai.APIConnectionError):
            return Failure("connection", True, f"connection failed: {type(e.__cause__ or e).__name__}")
        if isinstance(e, (openai.APIResponseValidationError, ValueError, MalformedResponse)):
            return Failure("malformed", True, f"malformed response: {type(e).__name__}")
        return Failure("other", False, f"{type(e).__name__}: {e}")

    async def _served_name(self) -> str:
        if self._served is None:
            client = self._get_client()

            async def send() -> Any:
                return await client.models.list()

            page = await self._request(send, 0, self._what() + " /models", lambda r: 0)
            names = [m.id for m in page.data]
            if self.model in names or len(names) != 1:
                if self.model not in names:
                    raise EngineUnavailable(f"server {host_of(self.options.base_url)} serves {names}; pass "
                                            "engine.options.served_model=<one of them>")
                self._served = self.model
            else:
                self._served = names[0]
        return self._served

    # ---- generation ----------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Prompt], params: SamplingParams,
                 progress: ProgressFn | None = None) -> list[list[Completion]]:
        if not prompts:
            return []
        kinds = [self._endpoint_for(p) for p in prompts]
        done: queue.Queue[int] = queue.Queue()
        return self._run(self._generate(list(prompts), kinds, params, done), progress, done)

    def _endpoint_for(self, prompt: Prompt) -> str:
        ep = self.options.endpoint
        if isinstance(prompt, str):
            return "chat" if ep == "chat" else "completions"
        if ep == "completions":
            raise EngineUnavailable("engine.options.endpoint=completions takes string prompts only; this task sends "
                                    "chat messages (use endpoint=auto or chat)")
        return "chat"

    async def _generate(self, prompts: list[Prompt], kinds: list[str], params: SamplingParams,
                        done: "queue.Queue[int]") -> list[list[Completion]]:
        served = await self._served_name()
        jobs = [(lambda p=p, k=k: self._one(served, p, k, params)) for p, k in zip(prompts, kinds)]
        return await gather_ordered(jobs, self.options.concurrency, lambda i: done.put(1))

    async def _one(self, served: str, prompt: Prompt, kind: str, params: SamplingParams) -> list[Completion]:
        """``params.n`` completions of one prompt: one request asking for n; if the server returns fewer
        choices (some ignore ``n``), more requests for the rest, each with its own seed."""
        out: list[Completion] = []
        extra = 0
        while len(out) < params.n:
            want = params.n - len(out)
            out.extend(await self._call(served, prompt, kind, params, want, params.seed + extra))
            extra += 1
        return out[: params.n]

    async def _call(self, served: str, prompt: Prompt, kind: str, params: SamplingParams, n: int,
                    seed: int) -> list[Completion]:
        client = self._get_client()
        body: dict[str, Any] = {"model": served, "max_tokens": params.max_new_tokens,
                                "temperature": params.temperature, "n": n, "seed": seed}
        if params.top_p != 1.0:
            body["top_p"] = params.top_p
        if params.stop:
            body["stop"] = list(params.stop)
        text_len = len(prompt) if isinstance(prompt, str) else sum(len(m.get("content", "")) for m in prompt)
        est = text_len // 4 + params.max_new_tokens * n
        t0 = time.perf_counter()
        if kind == "chat":
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)

            async def send() -> Any:
                r = await client.chat.completions.create(messages=messages, **body)
                _check_choices(r)
                return r
        else:
            async def send() -> Any:
                r = await client.completions.create(prompt=prompt, **body)
                _check_choices(r)
                return r

        r = await self._request(send, est, self._what(), _total_tokens)
        seconds = (time.perf_counter() - t0) / max(1, len(r.choices))
        p_tok, c_tok = _usage_tokens(r)
        self.usage.add_tokens(p_tok, c_tok, self.options)
        comps = []
        choices = sorted(r.choices, key=lambda c: getattr(c, "index", 0) or 0)
        for c in choices:
            text = (c.message.content if kind == "chat" else c.text) or ""
            finish = "length" if c.finish_reason == "length" else "stop"
            text, finish = _cut_at_stop(text, finish, params.stop)
            comps.append(Completion(text=text, finish_reason=finish, prompt_tokens=p_tok,
                                    completion_tokens=c_tok // max(1, len(choices)), seconds=seconds))
        return comps

    # ---- log-likelihood ------------------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[tuple[Prompt, str]],
                      progress: ProgressFn | None = None) -> list[tuple[float, bool]]:
        if not requests:
            return []
        if any(not isinstance(p, str) for p, _ in requests):
            raise EngineUnavailable("openai engine: log-likelihood of chat prompts needs the model's chat template "
                                    "client-side; use the hf or vllm engine for this task")
        if self._ll_supported is False:
            raise self._ll_error()
        done: queue.Queue[int] = queue.Queue()
        return self._run(self._loglikelihood(list(requests), done), progress, done)

    def _ll_error(self) -> EngineUnavailable:
        return EngineUnavailable(f"server {host_of(self.options.base_url)} returns no prompt log-probabilities "
                                 "(completions with echo+logprobs); log-likelihood tasks need a server that does "
                                 "(e.g. vLLM) or the hf engine")

    async def _loglikelihood(self, requests: list[tuple[str, str]],
                             done: "queue.Queue[int]") -> list[tuple[float, bool]]:
        served = await self._served_name()
        client = self._get_client()

        async def one(ctx: str, cont: str) -> tuple[float, bool]:
            # As the hf engine and lm-eval: trailing spaces of the context belong to the continuation.
            n_space = len(ctx) - len(ctx.rstrip(" "))
            if n_space:
                ctx, cont = ctx[:-n_space], ctx[-n_space:] + cont
            text = ctx + cont

            async def send() -> Any:
                r = await client.completions.create(model=served, prompt=text, max_tokens=1, temperature=0,
                                                    echo=True, logprobs=1)
                _check_choices(r)
                return r

            r = await self._request(send, len(text) // 4 + 1, self._what() + " loglikelihood", _total_tokens)
            p_tok, c_tok = _usage_tokens(r)
            self.usage.add_tokens(p_tok, c_tok, self.options)
            lp = getattr(r.choices[0], "logprobs", None)
            offsets = getattr(lp, "text_offset", None) if lp is not None else None
            token_lps = getattr(lp, "token_logprobs", None) if lp is not None else None
            if not offsets or not token_lps or len(offsets) < 2:
                self._ll_supported = False
                raise self._ll_error()
            self._ll_supported = True
            tokens = list(lp.tokens or [])
            tops = list(lp.top_logprobs or [None] * len(tokens))
            n_prompt = p_tok or len(tokens) - 1
            total, greedy, counted = 0.0, True, 0
            for i in range(1, min(n_prompt, len(tokens))):
                end = offsets[i + 1] if i + 1 < len(offsets) else len(text)
                if end <= len(ctx):  # a context token (one straddling the split counts as continuation)
                    continue
                if token_lps[i] is None:
                    continue
                total += float(token_lps[i])
                counted += 1
                top = tops[i] if i < len(tops) else None
                if top:
                    greedy = greedy and float(token_lps[i]) >= max(float(v) for v in top.values()) - 1e-6
            if counted == 0:
                raise APIRequestError(f"{self._what()}: no continuation tokens in the echoed prompt")
            return total, greedy

        jobs = [(lambda c=c, x=x: one(c, x)) for c, x in requests]
        return await gather_ordered(jobs, self.options.concurrency, lambda i: done.put(1))


class MalformedResponse(ValueError):
    """A 200 answer without the fields a completion needs."""


def _check_choices(r: Any) -> None:
    choices = getattr(r, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise MalformedResponse("no choices")


def _usage_tokens(r: Any) -> tuple[int, int]:
    u = getattr(r, "usage", None)
    return (int(getattr(u, "prompt_tokens", 0) or 0), int(getattr(u, "completion_tokens", 0) or 0)) if u else (0, 0)


def _total_tokens(r: Any) -> int:
    return sum(_usage_tokens(r))


def _error_detail(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        msg = err.get("message") or err.get("detail") if isinstance(err, dict) else err
        if msg:
            return one_line(str(msg), 200)
    return one_line(getattr(e, "message", "") or type(e).__name__, 200)


def _cut_at_stop(text: str, finish: str, stop: Sequence[str]) -> tuple[str, str]:
    """Servers cut at stop strings; cut here too for those that do not."""
    hits = [text.find(s) for s in stop if s and s in text]
    return (text[: min(hits)], "stop") if hits else (text, finish)
