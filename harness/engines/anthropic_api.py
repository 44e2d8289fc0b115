"""An engine for Anthropic's Messages API through the official ``anthropic`` SDK.

A system message becomes the ``system`` parameter; a plain string prompt is sent as one user message. The SDK's
retries are off; retries (429 with Retry-After, 529 overloaded, 5xx, timeouts, dropped connections), rpm/tpm
limits, usage and cost are http_limits' shared policy. The API has no ``n`` and no seed: ``n`` completions are
``n`` requests. It gives no log-probabilities, so log-likelihood tasks raise EngineUnavailable.

The key is read from ``$ANTHROPIC_API_KEY`` (or the variable named by ``api_key_env``) and never written to
``describe()``, the identity, logs or exception messages.
"""
from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any, Sequence

from harness.engines import EngineUnavailable, register_engine
from harness.engines.base import Completion, Prompt, ProgressFn, SamplingParams
from harness.engines.event_loop import gather_ordered
from harness.engines.http_limits import (AsyncHTTPEngine, Failure, HTTPEngineOptions, host_of, one_line,
                                         status_failure)
from harness.engines.identity import identity_string
from harness.engines.openai_compat import _cut_at_stop, api_identity_parts

import anthropic  # noqa: E402 - after the harness imports so a missing SDK names the [api] extra

DEFAULT_HOST = "api.anthropic.com"


class AnthropicOptions(HTTPEngineOptions):
    api_key_env: str = "ANTHROPIC_API_KEY"
    #: Send temperature (and top_p when not 1) in the request body, as the config says (the SDK no longer
    #: declares them, so they go as extra body fields). False = the model's own sampling applies (for a model
    #: that rejects them); that is part of the identity, so its outputs are cached apart. The plan refuses, in
    #: one line, a temperature the model rejects (distill/teachers/api_models.py).
    send_sampling_params: bool = True


def split_system(prompt: Prompt) -> tuple[str | None, list[dict[str, str]]]:
    """(system text or None, the other messages); a string prompt is one user message."""
    if isinstance(prompt, str):
        return None, [{"role": "user", "content": prompt}]
    system = "\n\n".join(m["content"] for m in prompt if m.get("role") == "system") or None
    return system, [{"role": m["role"], "content": m["content"]} for m in prompt if m.get("role") != "system"]


@register_engine("anthropic")
class AnthropicEngine(AsyncHTTPEngine):
    """Anthropic Messages API behind the Engine protocol."""

    Options = AnthropicOptions

    def __init__(self, model: str | Path, adapter: str | Path | None = None, *, batch_size: int = 16,
                 dtype: str = "auto", device: str = "auto", options: AnthropicOptions | None = None) -> None:
        self.options = options or AnthropicOptions()
        self.model = str(model)
        self.adapter = str(adapter) if adapter else None
        self.identity = self.identify(model, adapter, dtype=dtype, device=device, options=self.options)
        self._init_http(self.options)
        self._served = self.options.served_model or self.model

    @classmethod
    def identify(cls, model: str | Path, adapter: str | Path | None = None, *, dtype: str = "auto",
                 device: str = "auto", options: AnthropicOptions | None = None) -> str:
        options = options or AnthropicOptions()
        parts = api_identity_parts(model, adapter, options, DEFAULT_HOST)
        if not options.send_sampling_params:  # the config's temperature is not what the model sampled with
            parts["sampling"] = "model default"
        return identity_string("anthropic", parts, {})

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {"backend": "anthropic", "model": self.model, "identity": self.identity,
                "served_model": self._served, "host": host_of(o.base_url, DEFAULT_HOST),
                "model_revision": o.model_revision, "api_key_env": o.api_key_env,
                "api_key_set": self._secret is not None, "timeout_s": o.timeout_s, "max_retries": o.max_retries,
                "concurrency": o.concurrency, "send_sampling_params": o.send_sampling_params, "rpm": o.rpm, "tpm": o.tpm,
                "price_per_mtok_in": o.price_per_mtok_in, "price_per_mtok_out": o.price_per_mtok_out,
                "usage": self.usage.to_dict()}

    def render(self, prompt: Prompt) -> Prompt:
        return prompt if isinstance(prompt, str) else [dict(m) for m in prompt]

    # ---- plumbing ------------------------------------------------------------------------------------
    def _what(self) -> str:
        return f"anthropic {host_of(self.options.base_url, DEFAULT_HOST)} {self._served}"

    def _get_client(self) -> anthropic.AsyncAnthropic:
        if self._client is None:
            self._client = anthropic.AsyncAnthropic(
                base_url=self.options.base_url, api_key=self._secret or "missing", max_retries=0,
                timeout=self.options.timeout_s + 5)  # our own wait_for limit fires first
        return self._client

    def _classify(self, e: BaseException) -> Failure:
        if isinstance(e, anthropic.APIStatusError):
            body = getattr(e, "body", None)
            err = body.get("error") if isinstance(body, dict) else None
            detail = err.get("message") if isinstance(err, dict) else getattr(e, "message", type(e).__name__)
            hint = {401: f"set ${self.options.api_key_env} to a valid key",
                    404: "check served_model (the Anthropic model id) and base_url"}.get(e.status_code, "")
            return status_failure(e.status_code, e.response.headers, one_line(str(detail), 200), hint)
        if isinstance(e, anthropic.APITimeoutError):
            return Failure("timeout", True, "request timed out")
        if isinstance(e, anthropic.APIConnectionError):
            return Failure("connection", True, f"connection failed: {type(e.__cause__ or e).__name__}")
        if isinstance(e, (anthropic.APIResponseValidationError, ValueError)):
            return Failure("malformed", True, f"malformed response: {type(e).__name__}")
        return Failure("other", False, f"{type(e).__name__}: {e}")

    # ---- generation ----------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Prompt], params: SamplingParams,
                 progress: ProgressFn | None = None) -> list[list[Completion]]:
        if not prompts:
            return []
        done: queue.Queue[int] = queue.Queue()
        return self._run(self._generate(list(prompts), params, done), progress, done)

    async def _generate(self, prompts: list[Prompt], params: SamplingParams,
                        done: "queue.Queue[int]") -> list[list[Completion]]:
        async def one(prompt: Prompt) -> list[Completion]:
            return [await self._call(prompt, params) for _ in range(params.n)]

        jobs = [(lambda p=p: one(p)) for p in prompts]
        return await gather_ordered(jobs, self.options.concurrency, lambda i: done.put(1))

    async def _call(self, prompt: Prompt, params: SamplingParams) -> Completion:
        client = self._get_client()
        system, messages = split_system(prompt)
        body: dict[str, Any] = {"model": self._served, "max_tokens": params.max_new_tokens, "messages": messages}
        if system is not None:
            body["system"] = system
        if self.options.send_sampling_params:
            extra = {"temperature": params.temperature}
            if params.top_p != 1.0:
                extra["top_p"] = params.top_p
            body["extra_body"] = extra
        if params.stop:
            body["stop_sequences"] = list(params.stop)
        est = sum(len(m["content"]) for m in messages) // 4 + params.max_new_tokens

        async def send() -> Any:
            r = await client.messages.create(**body)
            if not isinstance(getattr(r, "content", None), list):
                raise ValueError("no content")
            return r

        t0 = time.perf_counter()
        r = await self._request(send, est, self._what(), _total_tokens)
        p_tok, c_tok = _usage_tokens(r)
        self.usage.add_tokens(p_tok, c_tok, self.options)
        text = "".join(getattr(b, "text", "") for b in r.content if getattr(b, "type", "") == "text")
        finish = "length" if r.stop_reason == "max_tokens" else "stop"
        text, finish = _cut_at_stop(text, finish, params.stop)
        return Completion(text=text, finish_reason=finish, prompt_tokens=p_tok, completion_tokens=c_tok,
                          seconds=time.perf_counter() - t0)

    def loglikelihood(self, requests: Sequence[tuple[Prompt, str]],
                      progress: ProgressFn | None = None) -> list[tuple[float, bool]]:
        raise EngineUnavailable("the anthropic engine has no log-probabilities; run log-likelihood tasks "
                                "with the hf, vllm or openai (vLLM server) engine")


def _usage_tokens(r: Any) -> tuple[int, int]:
    u = getattr(r, "usage", None)
    return (int(getattr(u, "input_tokens", 0) or 0), int(getattr(u, "output_tokens", 0) or 0)) if u else (0, 0)


def _total_tokens(r: Any) -> int:
    return sum(_usage_tokens(r))
