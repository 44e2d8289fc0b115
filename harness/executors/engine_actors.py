"""Long-lived engine actors for the ray executor: jobs with a ``group`` (the base model + engine settings) run on
Ray actors that keep their loaded engine between units, instead of one Ray task each.

- At most ``slots`` actors live at once: as many as the cluster holds for one unit's resources (one per GPU;
  ``tensor_parallel_size`` GPUs for a vLLM actor), capped by ``executor.engine_actors``.
- An actor is started for a unit of its group and then serves the group's next units in turn: its process keeps
  the engine (``harness.models.serve_unit``), so the base model and every LoRA adapter of a run are served by
  one vLLM instance without reloading. When its group has no more units the actor is killed: ending the process
  is the only sure way to give GPU memory back (``del LLM`` leaks: vLLM #20860); its slot goes to the next group.
- Start-up has a deadline (``executor.actor_start_timeout_s``): an actor Ray cannot place, or whose process hangs
  at start, fails its unit's attempt with one line naming the unit instead of waiting silently.
- A failed attempt (the unit raised, or the actor died: killed, out of memory) ends that actor; the unit is
  retried on another actor, a fresh one under a fresh name where none of its group is idle.
"""
from __future__ import annotations

import itertools
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from harness.common.progress import send_progress_to
from harness.common.units import Resources

#: Fresh actor names across every executor call of this driver (a retried unit never meets an old name).
_NAMES = itertools.count(1)


def forward_progress(queue) -> None:
    """In a Ray worker (task or engine actor): its bars go to the driver through ``queue``; a lost message never
    fails the unit."""

    def put(event) -> None:
        try:
            queue.put_nowait(event)
        except Exception:  # the queue is full or gone: the driver's bar lags, the unit goes on
            pass

    send_progress_to(put if queue is not None else None)


class EngineActor:
    """The process an engine actor is: it runs its group's units one after another, keeping what they load."""

    def ready(self) -> int:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        return os.getpid()

    def run(self, title: str, progress: Any, fn: Callable[..., Any], *args: Any) -> Any:
        # The unit's name in the process title, as a Ray task has it (an operator finds it with ps); Ray's own
        # setproctitle, since it owns the process's argv area.
        import ray._raylet

        ray._raylet.setproctitle(title)
        forward_progress(progress)  # its bars show in the driver's display
        return fn(*args)


class ActorStartTimeout(RuntimeError):
    """An engine actor was not placed and started in time."""


@dataclass
class Actor:
    handle: Any
    name: str
    group: str
    unit: int | None  # the job it starts for or runs; None = idle
    deadline: float  # start-up deadline (time.monotonic)
    pid: int | None = None  # set once it answered ready()


def slots_for(ray, r: Resources, cap: int | None) -> int:
    """How many actors with resources ``r`` the cluster's alive nodes hold at once, at most ``cap``."""
    n = 0
    for node in (x["Resources"] for x in ray.nodes() if x.get("Alive")):
        by_gpu = int(node.get("GPU", 0) // r.gpus) if r.gpus else 1 << 30
        by_cpu = int(node.get("CPU", 0) // r.cpus) if r.cpus else 1 << 30
        n += min(by_gpu, by_cpu)
    n = max(1, n)
    return min(n, cap) if cap else n


class ActorPool:
    """The engine actors of one executor call and the grouped jobs waiting for them."""

    def __init__(self, ray, slots: int, start_timeout_s: float) -> None:
        self.ray = ray
        self.slots = slots
        self.start_timeout_s = start_timeout_s
        self.cls = ray.remote(EngineActor)
        self.waiting: dict[str, deque[int]] = {}
        self.live: list[Actor] = []

    def add(self, i: int, group: str, first: bool = False) -> None:
        q = self.waiting.setdefault(group, deque())
        q.appendleft(i) if first else q.append(i)

    def start(self, i: int, group: str, r: Resources, label: str) -> tuple[Any, Actor]:
        """A fresh actor for job ``i``; returns its ready() reference."""
        opts: dict[str, Any] = {"num_cpus": r.cpus, "num_gpus": r.gpus, "max_restarts": 0, "max_task_retries": 0,
                                "name": f"engine:{label}#{next(_NAMES)}"}
        if r.memory_gb:
            opts["memory"] = int(r.memory_gb * 2**30)
        handle = self.cls.options(**opts).remote()
        actor = Actor(handle, opts["name"], group, i, time.monotonic() + self.start_timeout_s)
        self.live.append(actor)
        return handle.ready.remote(), actor

    def kill(self, actor: Actor) -> None:
        if actor in self.live:
            self.live.remove(actor)
        try:
            self.ray.kill(actor.handle, no_restart=True)
        except Exception:  # already dead
            pass

    def kill_all(self) -> None:
        for actor in list(self.live):
            self.kill(actor)

    def next_idle(self) -> list[tuple[Actor, int]]:
        """Idle started actors take their group's next unit; those whose group is done are killed (slot freed)."""
        out = []
        for actor in list(self.live):
            if actor.unit is not None or actor.pid is None:
                continue
            q = self.waiting.get(actor.group)
            if q:
                actor.unit = q.popleft()
                out.append((actor, actor.unit))
            else:
                self.kill(actor)
        return out

    def to_start(self) -> list[tuple[int, str]]:
        """(job, group) to start fresh actors for, while slots are free: groups in the order they came."""
        out = []
        for group, q in self.waiting.items():
            while q and len(self.live) + len(out) < self.slots:
                out.append((q.popleft(), group))
        return out

    def overdue(self, now: float) -> list[Actor]:
        return [a for a in self.live if a.pid is None and a.deadline <= now]

    def wait_s(self, now: float) -> float | None:
        starting = [a.deadline for a in self.live if a.pid is None]
        return max(0.0, min(starting) - now) if starting else None
