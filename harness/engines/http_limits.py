"""What the HTTP engines (openai-compatible, anthropic) share: the retry policy, request- and token-per-minute
limits (rate_limit.py), usage and cost accounting, the per-engine event loop (event_loop.py), and keeping the API
key out of every message.

The SDKs' own retries are disabled; one policy applies to both backends:

- retried: 408, 409, 425, 429, 5xx, 529 (overloaded), timeouts, dropped connections and malformed bodies;
- the wait is the server's ``Retry-After`` / ``retry-after-ms`` when it sends one (capped at ``max_wait_s``),
  else exponential backoff ``base * 2**attempt`` capped at ``backoff_max_s``, with jitter (half fixed, half
  random, so concurrent clients spread out without ever retrying at once);
- anything else (400, 401, 403, 404, 422) fails at once with one line naming the status and the fix.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import logging
import os
import queue
import random
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Awaitable, Callable, Coroutine, Mapping, TypeVar
from urllib.parse import urlsplit

from pydantic import Field

from harness.engines.base import EngineOptions, ProgressFn
from harness.engines.event_loop import LoopThread
from harness.engines.rate_limit import RateLimiter

log = logging.getLogger("harness.engines.http")

T = TypeVar("T")

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


class APIRequestError(RuntimeError):
    """A request that failed for good (non-retryable status, or retries exhausted); the message is one line and
    never holds the API key."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class HTTPEngineOptions(EngineOptions):
    """Options shared by the HTTP engines."""

    #: The server's base URL (e.g. http://127.0.0.1:8000/v1); None = the SDK's default service.
    base_url: str | None = None
    #: Name of the environment variable holding the API key (the key itself is never an option).
    api_key_env: str = "OPENAI_API_KEY"
    #: The model name the server knows; None = the --model given (for a local folder: the one model the server
    #: lists, asked once at the first request).
    served_model: str | None = None
    #: A revision the user declares for what the server serves (part of the identity, hence of cache keys).
    model_revision: str | None = None
    #: Per-request wall-clock limit (connect + wait + read), seconds.
    timeout_s: float = Field(120.0, gt=0)
    #: Retries per request after the first attempt.
    max_retries: int = Field(6, ge=0)
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    #: Longest Retry-After honoured (a longer one is capped to this).
    max_wait_s: float = Field(120.0, ge=0)
    #: Requests in flight at once.
    concurrency: int = Field(8, ge=1)
    #: Requests per minute and tokens (input + output) per minute; None = unlimited.
    rpm: float | None = Field(None, gt=0)
    tpm: float | None = Field(None, gt=0)
    #: Prices in USD per million input / output tokens, for the cost in `engine.usage`.
    price_per_mtok_in: float = Field(0.0, ge=0)
    price_per_mtok_out: float = Field(0.0, ge=0)


# ---- usage ---------------------------------------------------------------------------------------------
@dataclass
class Usage:
    """What an engine has spent. ``requests`` counts HTTP attempts (retries included); ``retries`` the attempts
    that were repeats; ``failed`` requests that gave up. Snapshot before a stage and subtract after it for the
    stage's share (``usage.since(before)``)."""

    requests: int = 0
    retries: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    wait_s: float = 0.0  # time spent waiting on backoff, Retry-After and rate limits
    errors: dict[str, int] = field(default_factory=dict)  # "429", "500", "timeout", "connection", "malformed"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cost_usd"] = round(self.cost_usd, 6)
        d["wait_s"] = round(self.wait_s, 3)
        return d

    def snapshot(self) -> "Usage":
        return Usage(**{**asdict(self), "errors": dict(self.errors)})

    def since(self, before: "Usage") -> "Usage":
        out = Usage()
        for f in fields(self):
            if f.name == "errors":
                out.errors = {k: v - before.errors.get(k, 0) for k, v in self.errors.items()
                              if v - before.errors.get(k, 0)}
            else:
                setattr(out, f.name, getattr(self, f.name) - getattr(before, f.name))
        return out

    def add_tokens(self, tokens_in: int, tokens_out: int, opts: HTTPEngineOptions) -> None:
        self.input_tokens += tokens_in
        self.output_tokens += tokens_out
        self.cost_usd += (tokens_in * opts.price_per_mtok_in + tokens_out * opts.price_per_mtok_out) / 1e6


# ---- retries -------------------------------------------------------------------------------------------
def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP date; None if absent."""
    if not headers:
        return None
    lower = {str(k).lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lower:
            return max(0.0, float(lower["retry-after-ms"]) / 1000)
        value = lower.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value).timestamp()
            return max(0.0, when - (time.time() if now is None else now))
    except (TypeError, ValueError, OverflowError):
        return None


def backoff_delay(attempt: int, opts: HTTPEngineOptions, retry_after: float | None,
                  rng: random.Random = random.Random()) -> float:
    """The wait before retry number ``attempt`` (0-based)."""
    if retry_after is not None:
        # The server said when: wait that long, plus a little jitter so a crowd of clients does not return at once.
        return min(retry_after, opts.max_wait_s) + rng.uniform(0, min(0.25, opts.backoff_base_s))
    d = min(opts.backoff_max_s, opts.backoff_base_s * 2 ** attempt)
    return d / 2 + rng.uniform(0, d / 2)


@dataclass
class Failure:
    """How one attempt failed: ``kind`` for the usage counters, whether to retry, the server's Retry-After."""

    kind: str
    retryable: bool
    message: str
    status: int | None = None
    retry_after: float | None = None


def redact(text: str, secret: str | None) -> str:
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def call_with_retries(
    send: Callable[[], Awaitable[T]],
    *,
    classify: Callable[[BaseException], Failure],
    opts: HTTPEngineOptions,
    usage: Usage,
    limiter: RateLimiter,
    est_tokens: int,
    settle_tokens: Callable[[T], int],
    secret: str | None,
    what: str,
) -> T:
    """``send()`` until it succeeds, a non-retryable failure, or ``max_retries`` retries; each attempt is limited
    to ``timeout_s`` and waits for the rate limiter first."""
    attempt = 0
    while True:
        handle, waited = await limiter.acquire(est_tokens)
        usage.wait_s += waited
        usage.requests += 1
        if attempt:
            usage.retries += 1
        try:
            result = await asyncio.wait_for(send(), timeout=opts.timeout_s)
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - classified below; KeyboardInterrupt passes through
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            fail = (Failure("timeout", True, f"no answer within {opts.timeout_s:g}s")
                    if isinstance(e, (asyncio.TimeoutError, TimeoutError)) else classify(e))
            usage.errors[fail.kind] = usage.errors.get(fail.kind, 0) + 1
            RateLimiter.settle(handle, 0 if fail.status is None else est_tokens)
            msg = redact(one_line(fail.message), secret)
            if not fail.retryable or attempt >= opts.max_retries:
                usage.failed += 1
                why = f"after {attempt + 1} attempts" if fail.retryable else "(not retried)"
                raise APIRequestError(f"{what}: {msg} {why}", fail.status) from None
            delay = backoff_delay(attempt, opts, fail.retry_after)
            log.info("%s: %s; retry %d/%d in %.2fs", what, msg, attempt + 1, opts.max_retries, delay)
            usage.wait_s += delay
            await asyncio.sleep(delay)
            attempt += 1
            continue
        RateLimiter.settle(handle, settle_tokens(result))
        return result


def status_failure(status: int, headers: Mapping[str, str] | None, detail: str, hint: str = "") -> Failure:
    """A Failure from an HTTP error status."""
    retry = status in RETRY_STATUS or status >= 500
    text = f"HTTP {status}: {detail}" + (f" ({hint})" if hint and not retry else "")
    return Failure(str(status), retry, text, status, parse_retry_after(headers))


def host_of(base_url: str | None, default: str = "api.openai.com") -> str:
    """host[:port] of the base URL, without any user:password@ part."""
    if not base_url:
        return default
    parts = urlsplit(base_url if "://" in base_url else "http://" + base_url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


class AsyncHTTPEngine:
    """Plumbing shared by the HTTP engines: the private loop, progress from the caller's thread, the retry
    policy, and exceptions that leave the engine one line long and without the key. Subclasses set
    ``options``, call ``_init_http`` and define ``_classify``, ``_what`` and ``_get_client``."""

    options: HTTPEngineOptions
    _client: Any

    def _init_http(self, options: HTTPEngineOptions) -> None:
        self.usage = Usage()
        #: read once, from the environment only; never written anywhere
        self._secret = os.environ.get(options.api_key_env) or None
        self._limiter = RateLimiter(options.rpm, options.tpm)
        self._loop: LoopThread | None = None
        self._client = None

    def _what(self) -> str:
        raise NotImplementedError

    def _classify(self, e: BaseException) -> Failure:
        raise NotImplementedError

    def _run(self, coro: Coroutine[Any, Any, T], progress: ProgressFn | None, done: "queue.Queue[int]") -> T:
        from harness.engines import EngineUnavailable

        if self._loop is None:
            self._loop = LoopThread(f"{type(self).__name__}-loop")
        fut = self._loop.submit(coro)
        try:
            while True:  # progress is reported from the caller's thread
                try:
                    return fut.result(timeout=0.2)
                except concurrent.futures.TimeoutError:
                    pass
                finally:
                    n = 0
                    while not done.empty():
                        n += done.get_nowait()
                    if n and progress:
                        progress(n)
        except (APIRequestError, EngineUnavailable):
            raise
        except KeyboardInterrupt:
            fut.cancel()
            raise
        except Exception as e:  # noqa: BLE001 - one line, no key
            raise APIRequestError(redact(one_line(f"{self._what()}: {type(e).__name__}: {e}"),
                                         self._secret)) from None

    async def _request(self, send: Callable[[], Awaitable[T]], est_tokens: int, what: str,
                       settle_tokens: Callable[[Any], int]) -> T:
        return await call_with_retries(
            send, classify=self._classify, opts=self.options, usage=self.usage, limiter=self._limiter,
            est_tokens=est_tokens, settle_tokens=settle_tokens, secret=self._secret, what=what)

    def close(self) -> None:
        if self._loop is not None:
            client = self._client
            self._loop.close(client.close() if client is not None else None)
            self._loop, self._client = None, None

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass
