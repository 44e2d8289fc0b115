"""The ray executor: units as Ray tasks with their CPU/GPU/memory requests, on an existing cluster
(``executor.address`` or RAY_ADDRESS) or a local one (``executor.cpus``, default: this machine's).

What it takes from verl/vLLM/lm-eval's trackers: the driver checks capacity before anything starts (a unit no
node can hold would wait forever: a silent hang); a failed attempt (an exception, or a worker process that died)
is written to <run>/logs/units/<unit>.attempt-N.log and the unit is submitted again under a fresh name, up to
``executor.max_retries`` times, then reported while the rest finish; workers return values and never write the
run folder's index files or the SQLite cache. vLLM inside a unit uses its own multiprocessing backend, never its
Ray executor (nesting it inside a placed task deadlocks). Jobs with a ``group`` (evaluation units of hf/vLLM
engines) run on long-lived engine actors instead of tasks (harness/executors/engine_actors.py).
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.common.progress import DriverBars, console
from harness.common.units import Outcome, Resources
from harness.config import ConfigError
from harness.executors import Job, error_log, register_executor
from harness.executors.engine_actors import Actor, ActorPool, ActorStartTimeout, forward_progress, slots_for

#: Seconds to wait for a cluster to answer ray.init before saying so (a wrong address hangs otherwise).
CONNECT_TIMEOUT_S = 60


#: Seconds between the driver's looks at the workers' progress while it waits for units.
PROGRESS_POLL_S = 0.5


def _call(fn, queue, *args):
    """What a Ray worker runs: the unit's function, with the harness's quiet settings of a worker process and its
    progress bars forwarded to the driver's display."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    forward_progress(queue)
    return fn(*args)


def _sees(paths: list[str]) -> tuple[str, list[str]]:
    return socket.gethostname(), [p for p in paths if not Path(p).exists()]


@register_executor("ray")
class RayExecutor:
    in_process = False

    def __init__(self, cfg) -> None:
        try:
            import ray
        except ModuleNotFoundError:
            raise ConfigError("executor.kind=ray needs the package 'ray'; install it with pip install -e '.[ray]'") from None
        self.cfg = cfg
        self.ray = ray
        self.address = cfg.address or os.environ.get("RAY_ADDRESS")
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}
            if self.address:
                kw["address"] = self.address
            else:
                kw["num_cpus"] = cfg.cpus or os.cpu_count()
                if cfg.gpus is not None:
                    kw["num_gpus"] = cfg.gpus
            try:
                ray.init(**kw)
            except (ConnectionError, TimeoutError) as e:
                raise ConfigError(f"no Ray cluster answers at {self.address!r} ({e}); start one (ray start --head) "
                                  "or unset executor.address and RAY_ADDRESS for a local cluster") from None
        self._remote = ray.remote(_call)

    def progress_queue(self):
        """The queue workers send their bars' events through (one small actor, started once per driver)."""
        if getattr(self, "_progress", None) is None:
            from ray.util.queue import Queue

            self._progress = Queue(maxsize=10_000, actor_options={"num_cpus": 0})
        return self._progress

    @staticmethod
    def drain(queue) -> list:
        try:
            n = queue.qsize()
            return queue.get_nowait_batch(n) if n else []
        except Exception:  # the queue actor died: bars stop moving, units go on
            return []

    def describe(self) -> dict[str, Any]:
        res = self.ray.cluster_resources()
        return {"kind": "ray", "address": self.address or "local",
                "nodes": sum(1 for n in self.ray.nodes() if n.get("Alive")),
                "resources": {k: v for k, v in sorted(res.items()) if k in ("CPU", "GPU", "memory")},
                "max_retries": self.cfg.max_retries, "engine_actors": self.cfg.engine_actors}

    def check_capacity(self, jobs: Sequence[Job]) -> None:
        """Every unit must fit on some node, else Ray would queue it forever."""
        nodes = [n["Resources"] for n in self.ray.nodes() if n.get("Alive")]
        for job in jobs:
            r = job.unit.resources
            if not any(n.get("CPU", 0) >= r.cpus and n.get("GPU", 0) >= r.gpus for n in nodes):
                raise ConfigError(f"unit {job.unit.name} needs {r.cpus:g} CPUs and {r.gpus:g} GPUs, more than any "
                                  f"node of the Ray cluster has ({len(nodes)} nodes); add such a node or lower the "
                                  "unit's needs (e.g. eval.engine.options.tensor_parallel_size)")

    def check_visible(self, paths: Sequence[Path]) -> None:
        """Every node must see the run folder and the models (a shared file system): one task per node."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = self.ray.remote(_sees)
        refs = [probe.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote([str(p) for p in paths]) for n in self.ray.nodes() if n.get("Alive")]
        for host, missing in self.ray.get(refs, timeout=CONNECT_TIMEOUT_S):
            if missing:
                raise ConfigError(f"{missing[0]} is not visible from Ray node {host}; put output_dir and the models "
                                  "on a file system every node mounts (e.g. NFS) and point the config there")

    def engine_slots(self, r: Resources) -> int:
        """Engine actors this cluster runs at once for units needing ``r`` (``executor.engine_actors`` caps it)."""
        return slots_for(self.ray, r, self.cfg.engine_actors)

    def run(self, jobs: Sequence[Job], log_dir: Path | None = None,
            on_done: Callable[[int, Outcome], None] | None = None) -> list[Outcome]:
        if not jobs:
            return []
        self.check_capacity(jobs)
        return RayRun(self, jobs, log_dir, on_done).run()


#: What a reference Ray is computing stands for: a plain task, an engine actor's start, or a unit on an actor.
TASK, READY, UNIT = "task", "ready", "unit"


class RayRun:
    """One call of ``RayExecutor.run``, its state explicit: each job's attempts and outcome, the references Ray
    is computing (what each stands for, which job, on which engine actor), the actor pool, and the driver's
    bars. ``run()`` waits for one reference at a time (polling the workers' progress meanwhile) and handles it:
    an actor ready runs its unit, a unit done is committed, a failure is logged and retried or recorded."""

    def __init__(self, executor: RayExecutor, jobs: Sequence[Job], log_dir: Path | None,
                 on_done: Callable[[int, Outcome], None] | None) -> None:
        self.ray = executor.ray
        self.cfg = executor.cfg
        self.remote = executor._remote
        self.drain = executor.drain
        self.jobs, self.log_dir, self.on_done = jobs, log_dir, on_done
        self.shared: dict[int, Any] = {}  # one object-store copy of each large argument (the plan) for every unit
        self.progress = executor.progress_queue()  # workers' bars -> the driver's display
        self.outcomes: list[Outcome | None] = [None] * len(jobs)
        self.attempts = [1] * len(jobs)
        #: reference -> (what it is: TASK | READY | UNIT, job index, the engine actor or None)
        self.pending: dict[Any, tuple[str, int, Actor | None]] = {}
        grouped = [i for i, j in enumerate(jobs) if j.group is not None]
        slots = max(executor.engine_slots(jobs[i].unit.resources) for i in grouped) if grouped else 1
        self.pool = ActorPool(self.ray, slots, self.cfg.actor_start_timeout_s)
        self.advance: Callable[[int], None] = lambda n: None  # the driver's bar of finished units, once shown
        for i in range(len(jobs)):
            self.enqueue(i)

    def run(self) -> list[Outcome]:
        try:
            with DriverBars(f"units on ray ({self.jobs[0].unit.kind})", len(self.jobs)) as bars:
                self.advance = bars.unit_done
                self.schedule()
                while self.pending:
                    self.step(bars)
        finally:
            self.pool.kill_all()  # ending the processes frees their GPU memory
        return self.outcomes  # type: ignore[return-value]

    # ---- sending work --------------------------------------------------------------------------------------
    def put(self, a: Any) -> Any:
        if isinstance(a, (str, int, float, bool, type(None), Path)):
            return a
        if id(a) not in self.shared:
            self.shared[id(a)] = self.ray.put(a)
        return self.shared[id(a)]

    def enqueue(self, i: int, retry: bool = False) -> None:
        """A plain job goes to Ray as a task at once; a grouped one waits for an engine actor of its group (a
        retry at the front of the queue)."""
        job = self.jobs[i]
        if job.group is None:
            self.pending[self.submit(i)] = (TASK, i, None)
        else:
            self.pool.add(i, job.group, first=retry)

    def submit(self, i: int) -> Any:
        job = self.jobs[i]
        r = job.unit.resources
        opts: dict[str, Any] = {"num_cpus": r.cpus, "num_gpus": r.gpus, "max_retries": 0,
                                "name": f"{job.unit.name}#{self.attempts[i]}"}  # a fresh name per attempt
        if r.memory_gb:
            opts["memory"] = int(r.memory_gb * 2**30)
        return self.remote.options(**opts).remote(job.fn, self.progress, *[self.put(a) for a in job.args])

    def run_on(self, actor: Actor, i: int) -> Any:
        job = self.jobs[i]
        return actor.handle.run.remote(f"ray::{job.unit.name}#{self.attempts[i]}", self.progress, job.fn,
                                       *[self.put(a) for a in job.args])

    def schedule(self) -> None:
        """Idle actors take their group's next unit; actors are started for groups that wait."""
        for actor, i in self.pool.next_idle():
            self.pending[self.run_on(actor, i)] = (UNIT, i, actor)
        for i, group in self.pool.to_start():
            ref, actor = self.pool.start(i, group, self.jobs[i].unit.resources, group[:8])
            self.pending[ref] = (READY, i, actor)

    # ---- what comes back -------------------------------------------------------------------------------------
    def step(self, bars: DriverBars) -> None:
        """Wait for one reference (at most a progress poll, or an actor's start deadline) and handle it."""
        start_wait = self.pool.wait_s(time.monotonic())
        done, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=PROGRESS_POLL_S if start_wait is None
                                else min(start_wait, PROGRESS_POLL_S))
        bars.apply(self.drain(self.progress))
        if done:
            self.landed(done[0])
        elif self.pool.overdue(time.monotonic()):
            self.expire_starts()

    def landed(self, ref: Any) -> None:
        what, i, actor = self.pending.pop(ref)
        try:
            value = self.ray.get(ref)
        except Exception as e:  # the unit raised (RayTaskError), or its process died (worker/actor died)
            if actor is not None:
                self.pool.kill(actor)  # a retry gets another process, never this one's state
            self.failed(i, getattr(e, "cause", None) or e)
            self.schedule()
            return
        if what == READY:
            actor.pid = value
            self.pending[self.run_on(actor, i)] = (UNIT, i, actor)
            return
        if actor is not None:
            actor.unit = None
        self.ended(i, Outcome(self.jobs[i].unit, value, attempts=self.attempts[i]))
        self.schedule()

    def expire_starts(self) -> None:
        """Engine actors that missed their start-up deadline are killed; their units fail this attempt."""
        for actor in self.pool.overdue(time.monotonic()):
            ref = next(k for k, v in self.pending.items() if v[2] is actor)
            i = self.pending.pop(ref)[1]
            self.pool.kill(actor)
            r = self.jobs[i].unit.resources
            self.failed(i, ActorStartTimeout(
                f"engine actor {actor.name} for unit {self.jobs[i].unit.name} did not start within "
                f"{self.cfg.actor_start_timeout_s:g} s (it needs {r.cpus:g} CPUs, {r.gpus:g} GPUs): Ray could not "
                "place it or its process hangs at start-up; see `ray status` and the worker logs, or raise "
                "executor.actor_start_timeout_s"))
        self.schedule()

    def failed(self, i: int, cause: BaseException) -> None:
        """Log the attempt; submit it again (fresh name or actor), or record the error once all are spent."""
        job = self.jobs[i]
        log = error_log(job.log_dir or self.log_dir, job.unit, self.attempts[i], cause)
        if self.attempts[i] <= self.cfg.max_retries:
            console.print(f"[yellow]retry[/] {job.unit.name}: attempt {self.attempts[i]} failed "
                          f"({type(cause).__name__}); log {log}", highlight=False)
            self.attempts[i] += 1
            self.enqueue(i, retry=True)
            return
        self.ended(i, Outcome(job.unit, error=f"{type(cause).__name__}: {str(cause)[:300]}",
                              attempts=self.attempts[i], log=log))

    def ended(self, i: int, outcome: Outcome) -> None:
        self.outcomes[i] = outcome
        if self.on_done is not None:
            self.on_done(i, outcome)
        self.advance(1)
