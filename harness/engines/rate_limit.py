"""Requests- and tokens-per-minute limits for the HTTP engines (``rpm``, ``tpm`` in their options)."""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Callable


class RateLimiter:
    """Requests and tokens per minute over a sliding 60 s window. A request reserves its estimated tokens
    before it is sent; ``settle`` replaces the estimate by what the server reports."""

    WINDOW = 60.0

    def __init__(self, rpm: float | None, tpm: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rpm, self.tpm, self.clock = rpm, tpm, clock
        self._events: deque[list[float]] = deque()  # [time, tokens]
        self._lock: asyncio.Lock | None = None

    def _prune(self, now: float) -> None:
        while self._events and now - self._events[0][0] >= self.WINDOW:
            self._events.popleft()

    def _wait_needed(self, now: float, tokens: int) -> float:
        self._prune(now)
        waits = [0.0]
        if self.rpm is not None and len(self._events) + 1 > self.rpm:
            k = int(len(self._events) + 1 - self.rpm)  # the k oldest must leave the window
            waits.append(self._events[k - 1][0] + self.WINDOW - now)
        if self.tpm is not None and self._events:
            used = sum(e[1] for e in self._events)
            excess = used + min(tokens, self.tpm) - self.tpm
            for t, n in self._events:
                if excess <= 0:
                    break
                excess -= n
                waits.append(t + self.WINDOW - now)
        return max(waits)

    async def acquire(self, tokens: int) -> tuple[list[float] | None, float]:
        """Wait until one more request of ``tokens`` fits; returns (handle for settle, seconds waited)."""
        if self.rpm is None and self.tpm is None:
            return None, 0.0
        if self._lock is None:
            self._lock = asyncio.Lock()
        waited = 0.0
        async with self._lock:  # first come, first served
            while True:
                wait = self._wait_needed(self.clock(), tokens)
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
                waited += wait
            event = [self.clock(), float(tokens)]
            self._events.append(event)
        return event, waited

    @staticmethod
    def settle(handle: list[float] | None, tokens: int) -> None:
        if handle is not None:
            handle[1] = float(tokens)
