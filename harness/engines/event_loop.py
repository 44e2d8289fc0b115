"""The HTTP engines' own event loop: a private asyncio loop in a daemon thread, and running jobs on it with a
bounded number in flight, results in order."""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

T = TypeVar("T")


class LoopThread:
    """A private asyncio loop in a daemon thread: the sync ``generate`` of an engine runs its async requests
    there, so one client and its connection pool live across calls whether or not the caller has a loop."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> "concurrent.futures.Future[T]":
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        fut = self.submit(coro)
        try:
            return fut.result()
        except KeyboardInterrupt:
            fut.cancel()
            raise

    def close(self, final: Coroutine[Any, Any, Any] | None = None) -> None:
        if not self.loop.is_running():
            return
        if final is not None:
            try:
                asyncio.run_coroutine_threadsafe(final, self.loop).result(timeout=10)
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self.loop.close()


async def gather_ordered(jobs: list[Callable[[], Awaitable[T]]], concurrency: int,
                         on_done: Callable[[int], None] | None = None) -> list[T]:
    """Run ``jobs`` with at most ``concurrency`` in flight; results in the jobs' order. The first failure
    cancels the rest and is raised."""
    sem = asyncio.Semaphore(concurrency)
    out: list[Any] = [None] * len(jobs)

    async def one(i: int) -> None:
        async with sem:
            out[i] = await jobs[i]()
        if on_done:
            on_done(i)

    tasks = [asyncio.ensure_future(one(i)) for i in range(len(jobs))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return out
