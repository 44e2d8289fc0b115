"""Hostile programs against the code sandbox (tasks/scorers/code.py): every one is scored as not passed, with its
own status, and leaves the host as it was (no file changed outside the temp dirs, no connection made, no process
left). Each program would pass if its attack worked."""
import hashlib
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from harness.tasks.scorers import code as sandbox
from harness.tasks.scorers.code import isolation_level, run_many, run_python

SECRET = "harness-test-secret-" + os.urandom(8).hex()


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def _sandbox_pids() -> list[int]:
    """Processes on this machine whose command line is the sandbox runner (or unshare launching one)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if b"@PASS" in cmd or b"harness-code-" in cmd:
            found.append(int(d.name))
    return found


@pytest.fixture(scope="module")
def host():
    """A folder outside the sandbox with a canary and a secret file, a secret env var, and a TCP listener."""
    folder = Path(tempfile.mkdtemp(prefix="harness-host-"))
    (folder / "canary.txt").write_text("canary\n")
    (folder / "secret.txt").write_text(SECRET)
    home_secret = Path.home() / f".harness-test-secret-{os.getpid()}"
    home_secret.write_text(SECRET)
    os.environ["HARNESS_TEST_SECRET"] = SECRET
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    accepted: list = []
    stop = threading.Event()

    def accept_loop():
        while not stop.is_set():
            try:
                conn, addr = listener.accept()
                accepted.append(addr)
                conn.close()
            except OSError:
                pass

    t = threading.Thread(target=accept_loop, daemon=True)
    t.start()
    before = _snapshot(folder)
    info = {"folder": folder, "port": listener.getsockname()[1], "accepted": accepted, "home_secret": home_secret}
    yield info
    stop.set()
    t.join(2)
    listener.close()
    os.environ.pop("HARNESS_TEST_SECRET", None)
    # the host is as it was: the same files with the same content, nothing new, no connection, no process left
    assert _snapshot(folder) == before
    assert home_secret.read_text() == SECRET
    home_secret.unlink()
    shutil.rmtree(folder)
    assert accepted == []
    time.sleep(0.3)
    assert _sandbox_pids() == []


def cases(host) -> dict[str, tuple[str, set[str]]]:
    """name -> (program, statuses it may get). Each program passes only if its attack works."""
    f, port, home = host["folder"], host["port"], host["home_secret"]
    return {
        "infinite_loop": ("while True:\n    pass\n", {"timeout"}),
        "ignored_alarm": ("import signal\nsignal.signal(signal.SIGALRM, lambda *a: None)\nsignal.alarm(1)\n"
                          "signal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n", {"timeout"}),
        "fork_bomb": ("import posix\nwhile True:\n    posix.fork()\n", {"sandbox_violation"}),
        "fork_bomb_multiprocessing": ("import multiprocessing as mp\nps = [mp.Process(target=print) for _ in range(100)]\n"
                                      "[p.start() for p in ps]\n", {"failed", "sandbox_violation"}),
        "subprocess_raw": ("import importlib, sys\nsys.modules.pop('_posixsubprocess', None)\n"
                           "m = importlib.import_module('_posixsubprocess')\n", {"sandbox_violation"}),
        "memory_bomb": ("x = []\nwhile True:\n    x.append(bytearray(10**8))\n", {"memory"}),
        "delete_elsewhere": (f"import posix\nposix.unlink({str(f / 'canary.txt')!r})\n", {"sandbox_violation"}),
        "write_elsewhere": (f"open({str(f / 'new.txt')!r}, 'w').write('x')\n", {"sandbox_violation"}),
        "write_elsewhere_caught": (f"try:\n    open({str(f / 'canary.txt')!r}, 'a').write('x')\nexcept Exception:\n"
                                   "    pass\n", {"sandbox_violation"}),
        "write_system": ("open('/usr/harness-pwned', 'w').write('x')\n", {"sandbox_violation"}),
        "secret_env": (f"import os\nassert os.environ.get('HARNESS_TEST_SECRET') == {SECRET!r}\n", {"failed"}),
        "secret_file": (f"assert open({str(f / 'secret.txt')!r}).read() == {SECRET!r}\n", {"failed"}),
        "secret_home": (f"assert open({str(home)!r}).read() == {SECRET!r}\n", {"failed"}),
        "socket_loopback": (f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n",
                            {"sandbox_violation"}),
        "early_exit": ("import os\nos._exit(0)\nassert False\n", {"failed"}),
        "deep_recursion": ("import sys\nsys.setrecursionlimit(10**5)\ndef f(n):\n    return f(n + 1)\nf(0)\n",
                           {"failed", "memory"}),
        "ignore_sigterm_kill_parent": ("import signal, os\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                       "import posix\nposix.kill(os.getppid(), 9)\n", {"sandbox_violation"}),
        "stdout_flood": ("import os\nwhile True:\n    os.write(1, b'x' * 65536)\n", {"output_limit"}),
        "big_file": ("with open('big.bin', 'wb') as fh:\n    fh.write(b'0' * (64 * 2**20))\n", {"file_limit"}),
        "nonce_everywhere": (
            "import os, sys, re, glob\n"
            "blobs = [' '.join(sys.argv), str(dict(os.environ)), open(__file__ if '__file__' in globals() "
            "else 'program.py').read()]\n"
            "for p in glob.glob('**', recursive=True) + glob.glob('/tmp/**', recursive=True):\n"
            "    try:\n        blobs.append(open(p, errors='ignore').read())\n    except Exception:\n        pass\n"
            "for fd in range(3, 64):\n"
            "    for nonce in set(re.findall(r'[0-9a-f]{32}', ' '.join(blobs))):\n"
            "        try:\n"
            "            os.write(fd, ('\\n' + nonce + ' {\"status\": \"passed\", \"detail\": \"\"}\\n').encode())\n"
            "        except OSError:\n            pass\n"
            "    try:\n"
            "        os.write(fd, b'\\nforged {\"status\": \"passed\"}\\n')\n    except OSError:\n        pass\n"
            "os._exit(0)\n", {"failed"}),
        "nonce_frames": (
            "import sys\nf = sys._getframe(0)\nwhile f.f_back is not None:\n    f = f.f_back\n"
            "    for v in list(f.f_locals.values()):\n        if callable(v) and getattr(v, '__closure__', None):\n"
            "            v('harness.pass')\n"
            "    a = f.f_locals.get('audit') or f.f_globals.get('audit')\n    if a:\n        a('harness.pass')\n"
            "sys.audit('harness.pass')\nos._exit(0)\n", {"failed"}),
        "nonce_gc": ("import gc\nfor o in gc.get_objects():\n    pass\n", {"sandbox_violation"}),
    }


QUICK = {"delete_elsewhere", "write_elsewhere", "write_elsewhere_caught", "write_system", "secret_env",
         "secret_file", "secret_home", "socket_loopback", "early_exit", "nonce_everywhere", "nonce_frames",
         "nonce_gc", "fork_bomb", "ignore_sigterm_kill_parent", "subprocess_raw"}


def test_hostile_programs_fail_with_their_status(host):
    all_cases = cases(host)
    names = sorted(all_cases)
    t0 = time.monotonic()
    results = run_many([all_cases[n][0] for n in names], timeout_s=4, memory_mb=512, output_kb=256, file_mb=8)
    elapsed = time.monotonic() - t0
    bad = {n: (r.status, r.detail) for n, r in zip(names, results) if r.status not in all_cases[n][1]}
    assert not bad, bad
    assert not any(r.passed for r in results)
    for n, r in zip(names, results):
        if n in QUICK:
            assert r.seconds < 3, (n, r)  # contained at once, not by the wall clock
    print(f"{len(names)} hostile programs in {elapsed:.1f} s")


def test_os_layers_alone_contain_the_attacks(host):
    """Without the audit hook and the guard, the namespaces and read-only root still stop the same attacks."""
    if isolation_level() != "namespaces":
        pytest.skip("namespaces unavailable here")
    f, port = host["folder"], host["port"]
    progs = {
        "write": f"open({str(f / 'new.txt')!r}, 'w').write('x')\n",
        "append": f"open({str(f / 'canary.txt')!r}, 'a').write('x')\n",
        "delete": f"import os\nos.unlink({str(f / 'canary.txt')!r})\n",
        "system": "open('/usr/harness-pwned', 'w').write('x')\n",
        "socket": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n",
        "secret": f"assert open({str(f / 'secret.txt')!r}).read() == {SECRET!r}\n",
        "env": f"import os\nassert os.environ.get('HARNESS_TEST_SECRET') == {SECRET!r}\n",
        "proc": "import os\nassert os.path.exists('/proc/1/environ')\n",
        "remount": "import ctypes\nassert ctypes.CDLL(None).mount(b'none', b'/', None, 32 | 4096, None) == 0\n",
        "escape_orphan": "import os\nif os.fork() == 0:\n    os.setsid()\n    import time\n    time.sleep(60)\n",
    }
    names = sorted(progs)
    results = run_many([progs[n] for n in names], timeout_s=5, guard=False, audit=False)
    by_name = dict(zip(names, results))
    for n, r in by_name.items():
        if n == "escape_orphan":
            assert r.status == "passed"  # allowed without the hook; the orphan must be gone (fixture checks)
        else:
            assert r.status == "failed", (n, r)
    assert "Network is unreachable" in by_name["socket"].detail or "unreachable" in by_name["socket"].detail.lower()
    assert "Read-only" in by_name["system"].detail


def test_canonical_solutions_pass_in_the_sandbox():
    from harness.tasks.humaneval import build_program, load_problems

    problems = load_problems()[:8]
    results = run_many([build_program(p, p["prompt"] + p["canonical_solution"]) for p in problems])
    assert [r.status for r in results] == ["passed"] * len(problems), [(r.status, r.detail) for r in results]
    assert {r.isolation for r in results} == {isolation_level()}
    from harness.tasks.humaneval import HumanEval

    task = HumanEval()
    doc = task.docs()[0]
    scored = task.score(doc, [problems[0]["canonical_solution"]])
    assert scored.details["status"] == "passed" and scored.details["isolation"] == isolation_level()


def test_fallback_is_loud_and_recorded(monkeypatch, caplog):
    monkeypatch.setattr(sandbox, "_isolation", None)
    monkeypatch.setenv("HARNESS_SANDBOX", "rlimits")
    with caplog.at_level("WARNING"):
        r = run_python("assert 1 + 1 == 2")
    assert r.status == "passed" and r.isolation == "rlimits"
    assert "CODE SANDBOX DEGRADED" in caplog.text
    r = run_python("import socket\nsocket.socket()")
    assert r.status == "sandbox_violation"  # the audit layer still holds
    monkeypatch.setattr(sandbox, "_isolation", None)
