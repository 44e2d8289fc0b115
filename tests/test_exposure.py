"""Equal data exposure (issue 15 item 1): every method trains num_epochs passes over its own examples whatever
packing, sequence length or number of processes; the global batch stays what the config says; the manifest
records data_passes, rows, steps and tokens per method."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.common.artifacts import Manifest, load_artifact
from harness.distill.exposure import TrainExposure, count_rows, plan_exposure
from harness.distill.train_config import TrainConfig
from harness.distill.trainer import train_student
from harness.reports.sections.training import training_section
from tests.test_train import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


def _examples(n: int, words: int) -> list[dict]:
    """n examples whose completions are ``words`` words long (the prompt is short)."""
    return [{"prompt": [{"role": "user", "content": f"What is {a} + {a}?"}],
             "completion": [{"role": "assistant", "content": " ".join(["step"] * words) + f" {2 * a}"}]}
            for a in range(n)]


def test_steps_follow_rows_and_world_size():
    c = TrainConfig(per_device_batch_size=8, gradient_accumulation_steps=2)  # global batch 16
    one = plan_exposure(100, 5000, c, world_size=1, packing=False, examples=100)
    two = plan_exposure(100, 5000, c, world_size=2, packing=False, examples=100)
    assert (one.accumulation, two.accumulation) == (2, 1)  # the global batch stays 16
    assert one.global_batch == two.global_batch == 16
    assert one.steps == two.steps == math.ceil(100 / 16) and one.data_passes == two.data_passes == 1.0
    three = plan_exposure(100, 5000, c.model_copy(update={"num_epochs": 3}), 1, False, 100)
    assert three.steps == 3 * one.steps and three.data_passes == 3.0
    fixed = plan_exposure(100, 5000, c.model_copy(update={"max_steps": 20}), 1, False, 100)
    assert fixed.budget == "steps" and fixed.data_passes == 2.96  # 2 passes + 6 x 16 rows
    tokens = plan_exposure(100, 5000, c.model_copy(update={"budget": "tokens", "budget_tokens": 2500}), 1, False, 100)
    assert tokens.budget == "tokens" and abs(tokens.data_passes - 0.5) <= 16 / 100
    # budget_tokens: the prompt + completion tokens the budget asks for (a fixed step count asks for none).
    assert (one.budget_tokens, three.budget_tokens, fixed.budget_tokens, tokens.budget_tokens) == (5000, 15000, None,
                                                                                                   2500)


def test_exposure_of_an_older_train_metrics_reads_under_the_new_name():
    # train_metrics.json written before schema 3 called budget_tokens "target_tokens": the model stays reusable.
    now = plan_exposure(100, 5000, TrainConfig(per_device_batch_size=8), 1, False, 100)
    old = {("target_tokens" if k == "budget_tokens" else k): v for k, v in now.model_dump().items()}
    assert "budget_tokens" not in old and TrainExposure.model_validate(old) == now
    with pytest.raises(ValueError, match="budget_tokens"):  # the current name is required
        TrainExposure.model_validate({k: v for k, v in now.model_dump().items() if k != "budget_tokens"})


def test_global_batch_must_divide():
    with pytest.raises(ValueError, match="global batch 12 is not a multiple"):
        TrainConfig(per_device_batch_size=8, global_batch=12)
    with pytest.raises(ValueError, match="per_device_batch_size x processes"):
        TrainConfig(per_device_batch_size=4, gradient_accumulation_steps=1, distributed={"nproc": 3})
    assert TrainConfig(per_device_batch_size=4, global_batch=64, distributed={"nproc": 8}).accumulation(8) == 2


def test_recipe_overrides_apply_to_their_method_only():
    c = TrainConfig(learning_rate=1e-6, recipes={"cft": {"learning_rate": 5e-6, "global_batch": 16}})
    assert c.for_method("cft").learning_rate == 5e-6 and c.for_method("cft").global_batch_size() == 16
    assert c.for_method("sft").learning_rate == 1e-6 and c.for_method("sft").recipes == {}


def test_packing_gives_equal_passes_and_steps_that_follow_packed_rows(tiny_model, tmp_path):
    """Short (sft-like) and long (cgd-like) examples, packed: each trains one pass over its own rows."""
    short, long_ = _examples(48, 4), _examples(48, 60)
    c = TrainConfig(packing=True, max_length=256, per_device_batch_size=2, learning_rate=1e-3, seed=0,
                    logging_steps=1, warmup_ratio=0.0)
    rows_short, _ = count_rows(tiny_model, short, c)  # TRL's pack_dataset, before any model is loaded
    rows_long, _ = count_rows(tiny_model, long_, c)
    assert rows_long >= 3 * rows_short  # very different lengths: far more long rows than short ones
    got = {}
    for name, exs in (("short", short), ("long", long_)):
        res = train_student(tiny_model, exs, tmp_path / name, c, progress=False)
        got[name] = res.metrics["exposure"]
    assert (got["short"]["rows"], got["long"]["rows"]) == (rows_short, rows_long)  # the Trainer's own rows
    for e in got.values():
        assert abs(e["data_passes"] - 1.0) <= e["global_batch"] / e["rows"]
        assert e["examples"] == 48 and e["packing"]
        assert e["tokens_trained"] > 0.9 * e["tokens_per_pass"]  # measured by the Trainer, EOS pads excluded
    assert got["short"]["steps"] == math.ceil(rows_short / 2) and got["long"]["steps"] == math.ceil(rows_long / 2)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HARNESS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def test_manifest_records_equal_passes_for_sft_and_cgd_with_packing(tmp_path):
    """The pipeline on the tiny student: sft's examples are much shorter than cgd's; both one pass. cgd has its
    own recipe (learning rate), recorded and marked."""
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "harness.cli", "train", "--preset", "smoke", "--methods", "sft,cgd",
           "--output-dir", str(out), "--set", "pool.n=64", "--set", "train.packing=true",
           "--set", "train.per_device_batch_size=2", "--set", "train.max_length=512",
           "--set", "train.recipes={cgd: {learning_rate: 0.0005}}"]
    r = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    manifest = load_artifact(Manifest, next(out.rglob("manifest.json")))
    ex = {m: manifest.models[m].train.exposure for m in ("sft", "cgd")}
    for e in ex.values():
        assert e.budget == "epochs" and e.packing
        assert abs(e.data_passes - 1.0) <= e.global_batch / e.rows
        assert e.budget_tokens == e.tokens_per_pass  # one epoch: every token of a pass, prompts included
    assert ex["cgd"].rows > 1.5 * ex["sft"].rows  # cgd's examples are longer: more packed rows
    assert ex["sft"].steps / ex["cgd"].steps == pytest.approx(ex["sft"].rows / ex["cgd"].rows,
                                                               rel=2 * 2 / ex["sft"].rows)
    assert manifest.models["sft"].train.exposure_warnings == []
    cgd, sft = manifest.models["cgd"].train, manifest.models["sft"].train
    assert cgd.own_recipe and cgd.recipe == {"learning_rate": 0.0005}  # marked, recorded
    assert not sft.own_recipe and cgd.config["learning_rate"] == 0.0005 != sft.config["learning_rate"]
    # The names say what they count: all tokens of a pass vs the completion tokens the loss is on.
    assert 0 < cgd.completion_tokens_per_epoch < cgd.tokens_per_epoch
    # The report's summary reads the typed record: data passes rounded, own recipe marked.
    training, _ = training_section(manifest, next(out.iterdir()))
    summary = dict(training["summary"])
    column = [t["model"] for t in training["models"]].index("cgd")
    assert summary["data_passes"][column] == f"{round(ex['cgd'].data_passes, 4):.4g}"
    assert summary["own_recipe"][column] == "true" and summary["completion_tokens_per_epoch"][column] == \
        f"{cgd.completion_tokens_per_epoch:,}"
