"""The paper's setups validate and dry-run here without their models, teachers or training data."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.config import ConfigError, load_config
from harness.stages.plan import estimate_cost, plan_run, student_params_b

ROOT = Path(__file__).resolve().parents[1]
PAPER = ["paper-llama31-8b", "paper-qwen25-math-7b", "paper-s11-3b"]


@pytest.mark.parametrize("name", PAPER)
def test_paper_config_validates_and_estimates(name):
    cfg = load_config(ROOT / "configs" / f"{name}.yaml", overrides=["eval.tasks=[math500]"])
    assert cfg.teacher.kind == "llm" and cfg.pool.source == "hf:TIGER-Lab/WebInstructSub"
    assert not cfg.train.use_lora and cfg.train.learning_rate == 1e-6 and cfg.train.num_epochs == 1
    assert cfg.train.global_batch_size() == 64 and cfg.train.distributed.nproc == 8  # sharded, as the paper
    plan = plan_run(cfg, run_id="dry")
    est = estimate_cost(plan)
    assert est["teacher_calls"] == 2 * 100_000 and est["teacher_tokens"] > 0
    assert est["train_gpu_hours"] > 0 and est["eval_tokens_max"] > 0
    if name == "paper-qwen25-math-7b":
        assert cfg.teacher.engine.backend == "anthropic" and cfg.teacher.prices() == (3.0, 15.0)
        assert est["teacher_cost_usd_max"] > 1000
    else:
        assert cfg.teacher.engine.backend == "openai" and cfg.teacher.engine.options["base_url"]


def test_student_size_from_name():
    assert student_params_b("meta-llama/Llama-3.1-8B-Instruct") == 8
    assert student_params_b("Qwen/Qwen2.5-Math-7B") == 7
    assert student_params_b("simplescaling/s1.1-3B") == 3
    assert student_params_b("tiny") is None


def test_misspelt_key_is_exit_2(tmp_path):
    raw = yaml.safe_load((ROOT / "configs" / "paper-llama31-8b.yaml").read_text())
    raw["teacher"]["critique_mod"] = raw["teacher"].pop("critique_mode")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="teacher.critique_mod"):
        load_config(bad)
    r = subprocess.run([sys.executable, "-m", "harness.cli", "compare", "--config", str(bad), "--dry-run"],
                       capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=300)
    assert r.returncode == 2 and "critique_mod" in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_dry_run_cli_prints_teacher_cost_and_gpu_hours():
    r = subprocess.run([sys.executable, "-m", "harness.cli", "compare", "--config",
                        "configs/paper-qwen25-math-7b.yaml", "--tasks", "math500,amc23", "--dry-run"],
                       capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=300)
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 0, out
    for key in ("teacher_tokens=", "teacher_cost_usd=2,", "train_gpu_hours=", "assumed_train_tokens_per_gpu_s=",
                "eval_tokens=", "eval_gpu_hours=", "probe_gpu_hours=", "assumptions:"):
        assert key in out


def test_dry_run_prints_self_hosted_teacher_gpu_hours_and_no_false_zero():
    r = subprocess.run([sys.executable, "-m", "harness.cli", "compare", "--config", "configs/paper-llama31-8b.yaml",
                        "--tasks", "math500", "--dry-run"],
                       capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=300)
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 0, out
    assert "teacher_gpu_hours=" in out and "self-hosted 70B teacher" in out
    assert "teacher_cost_usd=unknown" in out and "$0" not in out


def test_estimate_expected_and_cap_and_no_calls_for_computed_teachers():
    from harness.stages.costs import CostEstimate

    est = estimate_cost(plan_run(load_config(), run_id="x"))  # the default: the oracle teacher
    assert isinstance(est, CostEstimate) and est["teacher_calls"] == 0
    assert "measured on" in est.figure("train_tokens").basis  # the synthetic pool is local
    assert 0 < est["train_tokens"] <= est["train_tokens_max"]
    # an API model without a known price: unknown, never 0
    api = load_config(overrides=["teacher.kind=llm", "teacher.model=some-new-model", "teacher.engine.backend=openai",
                                 "pool.source=math_train", "eval.tasks=[math500]", "eval.limit=5"])
    e = estimate_cost(plan_run(api, run_id="x"))
    assert e["teacher_cost_usd"] == "unknown" and e["teacher_calls"] > 0
    assert "teacher_gpu_hours" not in e  # a provider's API: money, not GPU time
    # the llama config: teacher GPU-hours from the 70B size; expected below cap
    big = estimate_cost(plan_run(load_config(ROOT / "configs" / "paper-llama31-8b.yaml",
                                             overrides=["eval.tasks=[math500]"]), run_id="x"))
    assert 10 < big["teacher_gpu_hours"] < big["teacher_gpu_hours_max"]
    assert 50e6 < big["teacher_tokens_out"] < 200e6  # ~100K questions x 2 requests x ~500 tokens


def test_combination_checks():
    with pytest.raises(ConfigError, match="critique_mode=generic changes the critiques"):
        plan_run(load_config(overrides=["teacher.critique_mode=generic", "methods=[sft]"]), run_id="x")
    with pytest.raises(ConfigError, match="use one of the two"):
        plan_run(load_config(overrides=["teacher.critique_mode=irrelevant", "right_fraction=0.5"]), run_id="x")
    with pytest.raises(ConfigError, match="needs prices"):
        plan_run(load_config(overrides=["teacher.max_cost_usd=5"]), run_id="x")
