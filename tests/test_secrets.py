"""Secrets (issue 10, item 4): an API key given through the environment never appears in a run folder
(manifest, results, report, samples, training data), the call-cache database, or what the CLI prints, whether
the run succeeds or the API refuses the key and echoes it back; a key pasted where a variable *name* belongs is
not written out either."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-harness-test-7f3a9c1e5b2d4068"
ENV = "HARNESS_TEST_API_KEY"


def harness(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, ENV: SECRET, "HARNESS_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=600)


def assert_nowhere(res: subprocess.CompletedProcess, *roots: Path) -> None:
    assert SECRET not in res.stdout and SECRET not in res.stderr
    needle = SECRET.encode()
    for root in roots:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for f in files:
            assert needle not in f.read_bytes(), f"the API key was written to {f}"


def test_key_of_a_configured_engine_is_never_written(tmp_path, random_chat_model):
    """A whole compare whose config names the key's variable (teacher engine) and evaluates with hf."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"""name: secrets
methods: [sft]
student: {{model: {random_chat_model}}}
teacher:
  kind: oracle
  engine: {{backend: openai, options: {{api_key_env: {ENV}, base_url: "http://127.0.0.1:9/v1"}}}}
pool: {{n: 8}}
probe: {{max_new_tokens: 8}}
train: {{max_steps: 1, per_device_batch_size: 4, max_length: 2048}}
eval: {{tasks: [synthetic_id], limit: 2, max_new_tokens: {{"*": 8}}}}
""")
    out, cache = tmp_path / "out", tmp_path / "cache"
    res = harness("compare", "--config", str(cfg), "--output-dir", str(out), "--run-id", "s", cache=cache)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "s" / "manifest.json").exists() and (out / "s" / "report.html").exists()
    assert ENV in (out / "s" / "manifest.json").read_text()  # the variable's name is recorded, not its value
    assert_nowhere(res, out, cache)


def test_key_echoed_by_a_refusing_server_is_not_repeated(tmp_path, random_chat_model):
    """The openai engine against a server that answers 401 with the key it received in the message."""
    pytest.importorskip("openai")
    sys.path.insert(0, str(Path(__file__).parent))
    from servers.fault_proxy import FaultProxy

    proxy = FaultProxy("http://127.0.0.1:9/v1", fault_for=lambda body, attempt: "401-echo").start()
    try:
        out, cache = tmp_path / "out", tmp_path / "cache"
        res = harness("eval", "--set", f"student.model={random_chat_model}", "--tasks", "synthetic_id",
                      "--limit", "2", "--set", "eval.engine.backend=openai",
                      "--set", f"eval.engine.options={{api_key_env: {ENV}, base_url: '{proxy.base_url}', "
                               "served_model: tiny, max_retries: 0, timeout_s: 20}",
                      "--output-dir", str(out), "--run-id", "s", cache=cache)
        assert proxy.requests > 0, "no request reached the server"
        assert any(SECRET in " ".join(h.values()) for h in proxy.headers_seen), "the key was not sent"
    finally:
        proxy.stop()
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
    assert "Traceback" not in res.stderr and ENV in res.stderr  # the fix names the variable
    assert_nowhere(res, out, cache)


def test_key_pasted_as_the_variable_name_is_not_written(tmp_path):
    """A common mistake: the key itself where the variable's name belongs. It must not be echoed back."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    res = harness("compare", "--dry-run", "--set", "eval.engine.backend=openai",
                  "--set", f"eval.engine.options.api_key_env={SECRET}", "--output-dir", str(out), cache=cache)
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
    assert "api_key_env" in res.stderr and "Traceback" not in res.stderr
    assert_nowhere(res, *(p for p in (out, cache) if p.exists()))
