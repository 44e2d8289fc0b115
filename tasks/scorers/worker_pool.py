"""Worker processes with a hard wall-clock limit per job, for graders that an in-process timeout cannot stop:
math-verify's timeouts are SIGALRM based and only work in a main thread, and some inputs (huge power towers, giant
factorials) make sympy spin in C code that no signal interrupts. Each worker runs one job at a time in its own main
thread; the parent kills and replaces a worker whose job exceeds the limit (the job then counts as timed out).

A pool is given a job function and a warm-up function, both module-level (the workers import them by name), e.g.
``harness.tasks.scorers.math.MathGradingPool``.
"""
from __future__ import annotations

import atexit
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import weakref
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterator, Sequence

_MAX_DEFAULT_WORKERS = 8


def _worker_main(conn: Connection, run_job: Callable[..., Any], warm_up: Callable[[], None]) -> None:
    """Worker loop: one job at a time, in this process's main thread (so SIGALRM timeouts work)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        warm_up()
    except Exception:
        pass
    conn.send(("ready", None, None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job_id, *args = msg
        try:
            conn.send((job_id, bool(run_job(*args)), None))
        except BaseException as e:  # noqa: BLE001 - any grader failure is a wrong answer, reported
            conn.send((job_id, False, f"{type(e).__name__}: {str(e)[:200]}"))


def _context(preload: Sequence[str]) -> mp.context.BaseContext:
    # Never plain fork: the parent may hold torch/tokenizer threads. forkserver forks children from a clean,
    # single-threaded server that has the graders imported already, so replacing a killed worker is cheap.
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(list(preload))
        return ctx
    return mp.get_context("spawn")


def default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(n, _MAX_DEFAULT_WORKERS))


_start_lock = threading.Lock()


@contextmanager
def _parent_main_hidden() -> Iterator[None]:
    """Workers need only their job's modules. spawn/forkserver children otherwise re-run the parent's
    ``__main__``, which fails for ``python -`` and re-executes scripts without a ``__main__`` guard."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


class _Worker:
    def __init__(self, ctx: mp.context.BaseContext, run_job: Callable[..., Any],
                 warm_up: Callable[[], None]) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, run_job, warm_up), daemon=True)
        with _start_lock, _parent_main_hidden():
            self.proc.start()
        child.close()
        self.ready = False
        self.job: tuple | None = None
        self.started = 0.0

    def send(self, job: tuple) -> None:
        self.job, self.started = job, time.monotonic()
        self.conn.send(job)

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.join(2)
        finally:
            self.conn.close()

    def ask_to_stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, BrokenPipeError):
            pass

    def stop(self, deadline: float | None = None) -> None:
        self.ask_to_stop()
        self.proc.join(max(0.0, (deadline or time.monotonic() + 1.0) - time.monotonic()))
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(1)
        self.conn.close()


@dataclass
class JobResult:
    ok: bool
    timed_out: bool = False
    error: str | None = None


class WorkerPool:
    """Worker processes that run ``run_job(*args)`` -> bool jobs with a hard wall-clock limit per job.

    ``what`` names the work in errors ("math grading workers did not start ..."); ``start_hint`` says how to check
    that a worker can start (import the grader). Use as a context manager to run several batches without
    restarting workers."""

    def __init__(self, run_job: Callable[..., Any], warm_up: Callable[[], None], *, preload: Sequence[str] = (),
                 what: str, start_hint: str, workers: int | None = None, timeout: float,
                 start_timeout: float = 120.0) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}; pass e.g. timeout=5.0")
        self.timeout = float(timeout)
        self.n_workers = workers or default_workers()
        self.start_timeout = start_timeout  # how long a new worker may take to import and warm up
        self._run_job, self._warm_up, self._what, self._start_hint = run_job, warm_up, what, start_hint
        self._ctx = _context(preload)
        self._workers: list[_Worker] = []
        _live_pools.add(self)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        while len(self._workers) < self.n_workers:
            self._workers.append(self._new_worker())
        self._await_ready(self._workers)

    def close(self) -> None:
        """Stop the workers: ask all at once, give them 0.5 s together, then kill what is left."""
        workers, self._workers = self._workers, []
        for w in workers:
            w.ask_to_stop()
        deadline = time.monotonic() + 0.5
        for w in workers:
            w.stop(deadline)

    def _await_ready(self, workers: list[_Worker]) -> None:
        deadline = time.monotonic() + self.start_timeout
        pending = [w for w in workers if not w.ready]
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self._what} workers did not start within {self.start_timeout:.0f} s; "
                                   f"{self._start_hint}")
            for conn in wait([w.conn for w in pending], timeout=left):
                w = next(w for w in pending if w.conn is conn)
                try:
                    conn.recv()
                except (EOFError, OSError):
                    raise RuntimeError(f"a {self._what} worker died while starting; {self._start_hint}") from None
                w.ready = True
            pending = [w for w in pending if not w.ready]

    def _new_worker(self) -> _Worker:
        return _Worker(self._ctx, self._run_job, self._warm_up)

    def _replace(self, w: _Worker) -> _Worker:
        w.kill()
        new = self._new_worker()
        self._workers[self._workers.index(w)] = new
        return new

    def run_jobs(self, jobs: Sequence[tuple], on_done: Callable[[int], None] | None = None) -> list[JobResult]:
        """Run ``run_job(*job)`` for each job; ``on_done(i)`` as job i finishes. Returns one result per job, in
        order."""
        if not self._workers:
            self.start()
        results: list[JobResult | None] = [None] * len(jobs)
        queue = deque(range(len(jobs)))

        def finish(i: int, res: JobResult) -> None:
            results[i] = res
            if on_done is not None:
                on_done(i)

        while queue or any(w.job is not None for w in self._workers):
            for w in self._workers:
                if w.ready and w.job is None and queue:
                    i = queue.popleft()
                    w.send((i, *jobs[i]))
            busy = [w for w in self._workers if w.job is not None]
            starting = [w for w in self._workers if not w.ready]
            now = time.monotonic()
            next_deadline = min((w.started + self.timeout for w in busy), default=now + 1.0)
            ready_conns = wait([w.conn for w in busy + starting], timeout=max(0.0, next_deadline - now))
            for conn in ready_conns:
                w = next(w for w in self._workers if w.conn is conn)
                try:
                    job_id, ok, err = conn.recv()
                except (EOFError, OSError):  # the worker died (e.g. out of memory): that job failed
                    if not w.ready:
                        raise RuntimeError(f"a {self._what} worker died while starting; {self._start_hint}") from None
                    if w.job is not None:
                        finish(w.job[0], JobResult(False, error="grading worker died"))
                    self._replace(w)
                    continue
                if job_id == "ready":
                    w.ready = True
                    continue
                w.job = None
                finish(job_id, JobResult(ok, error=err))
            now = time.monotonic()
            for w in list(self._workers):
                if w.job is not None and now - w.started >= self.timeout:
                    job_id = w.job[0]
                    self._replace(w)  # hard kill: the only way to stop sympy spinning in C
                    finish(job_id, JobResult(False, timed_out=True))
            if queue and not any(w.ready for w in self._workers):
                self._await_ready(self._workers)  # every worker is (re)starting: wait with the start-up limit
        return [r if r is not None else JobResult(False, error="not graded") for r in results]


_live_pools: "weakref.WeakSet[WorkerPool]" = weakref.WeakSet()


def shutdown() -> None:
    """Stop every grading worker, multiprocessing's forkserver and its resource tracker, and wait for them, so that
    nothing outlives the process (they would otherwise linger for seconds, adopted by PID 1). Registered with
    ``atexit``; safe to call more than once (a later grading call starts them again)."""
    for pool in list(_live_pools):
        pool.close()
    try:
        from multiprocessing import forkserver

        fs = getattr(forkserver, "_forkserver", None)
        pid = getattr(fs, "_forkserver_pid", None)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)  # it holds only preloaded modules: a graceful exit takes seconds
            except ProcessLookupError:
                pass
            fs._stop()  # closes its pipe, reaps it, removes its socket file
    except Exception as e:  # noqa: BLE001 - private multiprocessing API: never fail an exit over it
        logging.getLogger(__name__).debug("forkserver shutdown: %s", e)
    try:
        from multiprocessing import resource_tracker

        resource_tracker._resource_tracker._stop()  # closes its pipe and reaps it
    except Exception as e:  # noqa: BLE001
        logging.getLogger(__name__).debug("resource tracker shutdown: %s", e)


atexit.register(shutdown)
