"""Bad input (issue 10, item 2): every kind of broken input a user can hand the CLI is exactly one line on stderr
naming the problem and the fix, exit code 2, no traceback, and nothing half-written (no run folder, or none of
its files touched). A corrupted call-cache entry is not an error: it is recomputed, never trusted, and counted.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ["HARNESS_DATA_DIR"])


def harness(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=600)


def one_line_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, no traceback, exactly one non-empty stderr line holding every needle; returns the line."""
    assert res.returncode == 2, (res.returncode, res.stdout[-2000:], res.stderr[-4000:])
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, res.stderr[-4000:]
    lines = [l for l in res.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def nothing_written(out: Path) -> None:
    assert not out.exists() or not any(out.iterdir()), sorted(str(p) for p in out.rglob("*"))


def data_copy(tmp_path: Path, task_dir: str, text: str) -> Path:
    """A mirror of shared/data (links) whose <task_dir>/test.jsonl holds ``text``."""
    root = tmp_path / "data"
    root.mkdir()
    for d in DATA.iterdir():
        if d.name != task_dir:
            (root / d.name).symlink_to(d)
    (root / task_dir).mkdir()
    (root / task_dir / "test.jsonl").write_text(text, encoding="utf-8")
    return root


# ---- config ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("yaml_text, needles", [
    ("methods: [sft\n", ["not valid YAML", "fix the syntax"]),
    ("name: x\nfrobnicate: 3\n", ["frobnicate", "configs/tiny.yaml"]),
    ("pool:\n  n: many\n", ["pool.n", "configs/tiny.yaml"]),
    ("eval:\n  limit: -3\n", ["eval.limit"]),
    ("- just\n- a list\n", ["mapping"]),
    # a key given twice: the second copy would silently win (configs/experiments/t5-passk.yaml once did this)
    ("eval:\n  limit: 3\nname: x\neval:\n  tasks: [tiny]\n", ["'eval'", "line 1", "line 4", "bad.yaml"]),
    ("presets:\n  smoke:\n    pool: {n: 4}\n    name: a\n    pool: {n: 8}\n", ["'pool'", "line 3", "line 5"]),
])
def test_bad_config_file(tmp_path, yaml_text, needles):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    out = tmp_path / "out"
    one_line_error(harness("compare", "--config", str(cfg), "--output-dir", str(out)), *needles)
    nothing_written(out)


def test_wrong_type_on_the_command_line(tmp_path):
    out = tmp_path / "out"
    one_line_error(harness("compare", "--set", "train.learning_rate=fast", "--output-dir", str(out)),
                   "train.learning_rate")
    nothing_written(out)


# ---- an output folder that cannot be created ---------------------------------------------------------------
# Root ignores file modes (a chmod'ed folder proves nothing here): /proc takes no new folders whoever asks, and a
# file cannot be a parent folder. Not dry runs: the old failure was a traceback when the run folder was made.
UNCREATABLE = [pytest.param("/proc/harness-no-such/out", "/proc", id="under-proc"),
               pytest.param("README.md/out", "README.md", id="file-as-parent")]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("out, existing", UNCREATABLE)
@pytest.mark.parametrize("cmd", [["compare", "--preset", "smoke", "--methods", "sft"], ["train", "--preset", "smoke"],
                                 ["eval", "--tasks", "synthetic_id", "--limit", "1"]])
def test_output_dir_that_cannot_be_created(cmd, out, existing):
    for how in (["--output-dir", out], ["--set", f"output_dir={out}"]):  # the option, or the config key
        line = one_line_error(harness(*cmd, *how), out, f"{existing} cannot be written", "pass a folder you can write")
        assert line.startswith("error: --output-dir" if how[0] == "--output-dir" else "error: output_dir"), line
    assert not Path("/proc/harness-no-such").exists() and (ROOT / "README.md").is_file()
    assert not list(ROOT.glob(".harness-write-check-*"))  # the probe leaves nothing behind


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_output_dir_that_cannot_be_created_from_python(tmp_path):
    """The same check in harness.compare / train / evaluate: the API, not the CLI, holds it."""
    import harness as pkg

    calls = [lambda: pkg.compare(preset="smoke", methods="sft", output_dir="/proc/harness-no-such"),
             lambda: pkg.train(preset="smoke", output_dir="/proc/harness-no-such"),
             lambda: pkg.evaluate(tasks="synthetic_id", limit=1, set=["output_dir=/proc/harness-no-such"])]
    for call in calls:
        with pytest.raises(pkg.UsageError, match="cannot be written"):
            call()


# ---- data ------------------------------------------------------------------------------------------------
def test_missing_data_dir(tmp_path):
    out = tmp_path / "out"
    one_line_error(harness("compare", "--tasks", "math500", "--output-dir", str(out),
                           env={"HARNESS_DATA_DIR": str(tmp_path / "nowhere")}), "math500", "HARNESS_DATA_DIR")
    nothing_written(out)


def test_empty_data_file(tmp_path):
    out = tmp_path / "out"
    data = data_copy(tmp_path, "math500", "")
    one_line_error(harness("eval", "--tasks", "math500", "--output-dir", str(out), "--dry-run",
                           env={"HARNESS_DATA_DIR": str(data)}), "math500", "empty")
    nothing_written(out)


def test_corrupted_line_in_a_data_file(tmp_path):
    out = tmp_path / "out"
    lines = (DATA / "math500" / "test.jsonl").read_text(encoding="utf-8").split("\n")
    lines[2] = lines[2][: len(lines[2]) // 2]  # a torn record
    data = data_copy(tmp_path, "math500", "\n".join(lines))
    one_line_error(harness("eval", "--tasks", "math500", "--output-dir", str(out), "--dry-run",
                           env={"HARNESS_DATA_DIR": str(data)}), "math500/test.jsonl:3", "not valid JSON")
    nothing_written(out)


# ---- models and adapters ------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["compare", "--student", "/nonexistent/model"],
    ["compare", "--teacher", "/nonexistent/teacher", "--set", "pool.source=math_train"],
    ["eval", "--model", "/nonexistent/model"],
])
def test_missing_model_fails_at_dry_run(tmp_path, args):
    out = tmp_path / "out"
    one_line_error(harness(*args, "--dry-run", "--output-dir", str(out)), "/nonexistent/", "not found")
    nothing_written(out)


def test_adapter_without_adapter_config(tmp_path, random_chat_model):
    bad = tmp_path / "adapter"
    bad.mkdir()
    (bad / "adapter_model.safetensors").write_bytes(b"")
    out = tmp_path / "out"
    one_line_error(harness("eval", "--model", str(random_chat_model), "--adapter", str(bad), "--dry-run",
                           "--output-dir", str(out)), "adapter_config.json")
    nothing_written(out)


def _other_model(src: Path, out: Path, hidden: int) -> Path:
    """The random chat model's tokenizer on a Qwen2 body of another width."""
    import shutil

    from transformers import Qwen2Config, Qwen2ForCausalLM

    out.mkdir()
    for f in src.iterdir():
        if "token" in f.name or f.name.endswith(".jinja") or f.name == "special_tokens_map.json":
            shutil.copy(f, out / f.name)
    base = Qwen2Config.from_pretrained(src)
    cfg = Qwen2Config(vocab_size=base.vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      eos_token_id=base.eos_token_id, pad_token_id=base.pad_token_id, tie_word_embeddings=True)
    Qwen2ForCausalLM(cfg).save_pretrained(out)
    return out


def _lora(model: Path, out: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(model),
                          LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    peft.save_pretrained(out)
    return out


def test_adapter_of_another_base_model(tmp_path, random_chat_model):
    adapter = _lora(random_chat_model, tmp_path / "adapter")
    other = _other_model(random_chat_model, tmp_path / "narrow", hidden=32)
    out = tmp_path / "out"
    for extra in (["--dry-run"], []):
        line = one_line_error(harness("eval", "--model", str(other), "--adapter", str(adapter), "--tasks",
                                      "synthetic_id", "--limit", "1", "--set", f"student.model={other}",
                                      "--output-dir", str(out), *extra), "adapter", "narrow")
        assert "q_proj" in line and "trained on" in line
        nothing_written(out)
    # The check lives in the API: harness.evaluate refuses the same adapter, dry run or not, writing nothing.
    import harness as pkg

    for dry_run in (True, False):
        with pytest.raises(pkg.UsageError, match="trained on another base model"):
            pkg.evaluate(other, adapter=adapter, tasks="synthetic_id", limit=1, set=[f"student.model={other}"],
                             output_dir=out, dry_run=dry_run)
        nothing_written(out)
    # The same adapter on the model it was made for passes the check (dry run: no model call).
    res = harness("eval", "--model", str(random_chat_model), "--adapter", str(adapter), "--tasks", "synthetic_id",
                  "--dry-run", "--output-dir", str(out))
    assert res.returncode == 0, res.stderr


# ---- older run folders -------------------------------------------------------------------------------------
def _old_run(root: Path) -> Path:
    """A run folder as the first release wrote it: schema 1 manifest and results, no fingerprints."""
    run = root / "old"
    (run / "samples" / "base").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"schema_version": 1, "run_id": "old", "config": {},
                                                   "models": {"base": {"path": "tiny"}}}))
    (run / "results.json").write_text(json.dumps({"schema_version": 1, "run_id": "old", "rows": [
        {"model": "base", "task": "synthetic_id", "metric": "accuracy", "value": 0.5, "n": 4}]}))
    (run / "samples" / "base" / "synthetic_id.jsonl").write_text(json.dumps({"id": "a", "score": 1.0}) + "\n")
    return run


@pytest.mark.parametrize("cmd", [["report"], ["rescore"], ["check", "--write-baseline", "BASE"]])
def test_older_run_folder(tmp_path, cmd):
    run = _old_run(tmp_path)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    args = [a.replace("BASE", str(tmp_path / "b.json")) for a in cmd]
    one_line_error(harness(args[0], str(run), *args[1:]), "schema version 1", "re-run the command that made the run")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "b.json").exists()


# ---- the call cache ----------------------------------------------------------------------------------------
def test_corrupted_cache_entry_is_recomputed_not_trusted(tmp_path, random_chat_model):
    cache = tmp_path / "cache"
    env = {"HARNESS_CACHE_DIR": str(cache)}
    args = ["eval", "--set", f"student.model={random_chat_model}", "--tasks", "synthetic_id", "--limit", "3",
            "--set", 'eval.max_new_tokens={"*": 8}']

    def run(out: str) -> dict:
        res = harness(*args, "--output-dir", str(tmp_path / out), "--run-id", "r", env=env)
        assert res.returncode == 0, res.stderr[-3000:]
        return json.loads((tmp_path / out / "r" / "manifest.json").read_text())

    first = run("a")
    assert first["models"]["base"]["cache_misses"] == 3
    con = sqlite3.connect(str(cache / "calls.sqlite"))
    keys = [k for (k,) in con.execute("SELECT key FROM calls_v2 ORDER BY key")]
    assert len(keys) == 3
    # Another answer under the old checksum (a flipped bit on disk), and a value that is not JSON at all.
    value = json.loads(con.execute("SELECT value FROM calls_v2 WHERE key=?", (keys[0],)).fetchone()[0])
    value[0]["text"] = "\\boxed{42} tampered"
    con.execute("UPDATE calls_v2 SET value=? WHERE key=?", (json.dumps(value), keys[0]))
    con.execute("UPDATE calls_v2 SET value=? WHERE key=?", ("{not json", keys[1]))
    con.commit()
    con.close()
    second = run("b")
    assert second["cache"]["corrupt_entries"] == 2
    ev = second["models"]["base"]
    assert ev["cache_misses"] == 2 and ev["cache_hits"] == 1
    responses = lambda out: (tmp_path / out / "r" / "samples" / "base" / "synthetic_id.jsonl").read_text()
    assert "tampered" not in responses("b")
    assert json.loads((tmp_path / "a" / "r" / "results.json").read_text())["rows"] == \
        json.loads((tmp_path / "b" / "r" / "results.json").read_text())["rows"]
    third = run("c")  # the recomputed entries replaced the bad ones
    assert third["cache"]["corrupt_entries"] == 0 and third["models"]["base"]["cache_hits"] == 3


def test_cache_file_that_is_not_a_database(tmp_path, random_chat_model):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "calls.sqlite").write_bytes(b"this was overwritten by something else\n" * 200)
    out = tmp_path / "out"
    res = harness("eval", "--set", f"student.model={random_chat_model}", "--tasks", "synthetic_id", "--limit", "1",
                  "--output-dir", str(out), env={"HARNESS_CACHE_DIR": str(cache)})
    # The plan is printed before the cache is opened: the error is the one last line.
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-3000:]
    lines = [l for l in res.stderr.strip().splitlines() if l.strip()]
    assert [l for l in lines if l.startswith("error:")] == lines[-1:], lines
    assert all(n in lines[-1] for n in ("calls.sqlite", "not a readable SQLite database", "delete it")), lines[-1]
    assert not [p for p in out.rglob("*") if p.is_file()]  # (pipeline.run makes the empty run folder first)
