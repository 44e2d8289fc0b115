"""Schema 3 of the run artifacts (harness.common.artifacts): what an older file becomes (read as it is where its
shape did not change, else refused in one line that says what to do), and the typed sections' contracts."""
import json

import pytest

from harness.common.artifacts import (
    SCHEMA_VERSION, EngineDescription, Fingerprint, Manifest, Results, SampleFileMeta, SchemaMismatch, ShardDone,
    load_artifact, save_artifact,
)
from harness.stages.evaluate import stored_meta

from test_report import make_manifest


def _meta() -> SampleFileMeta:
    fp = Fingerprint(key="k1", parts={"engine": "tiny@1:hf"})
    return SampleFileMeta(model="base", task="synthetic_id", n=4, generation=fp, scoring=fp, created="2026-01-01")


def test_version_2_sample_sidecars_and_shard_records_are_read_as_they_are(tmp_path):
    # Their shape did not change: a folder's stored samples stay reusable after the upgrade.
    path = tmp_path / "synthetic_id.meta.json"
    data = _meta().model_dump(mode="json")
    path.write_text(json.dumps({**data, "schema_version": 2}))
    assert load_artifact(SampleFileMeta, path) == _meta() and stored_meta(path) == _meta()
    done = {"schema_version": 2, "fingerprint": "f", "start": 0, "stop": 4, "n": 4, "seconds": 1.0, "hits": 0,
            "misses": 4, "engine": {"backend": "vllm", "served_by": {"host": "h", "pid": 1}, "lora_mode": "native"}}
    (tmp_path / "1of2.done.json").write_text(json.dumps(done))
    shard = load_artifact(ShardDone, tmp_path / "1of2.done.json")
    assert shard.schema_version == SCHEMA_VERSION and shard.engine.served_by.pid == 1
    # The first schema had no fingerprints: refused, and the evaluate stage evaluates such a pair again.
    path.write_text(json.dumps({**data, "schema_version": 1}))
    with pytest.raises(SchemaMismatch, match="schema version 1"):
        load_artifact(SampleFileMeta, path)
    assert stored_meta(path) is None


def test_version_2_manifest_and_results_are_refused_naming_the_command(tmp_path):
    man = json.loads(make_manifest().model_dump_json())
    man["schema_version"] = 2
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(SchemaMismatch) as e:
        load_artifact(Manifest, tmp_path / "manifest.json")
    msg = str(e.value)
    assert "\n" not in msg and "written by schema version 2 (this harness reads 3)" in msg
    assert "re-run the command that made the run" in msg and man["command"] in msg
    res = {"schema_version": 2, "run_id": "r", "primary_metrics": {}, "rows": [], "stats": {"inputs": "x"}}
    (tmp_path / "results.json").write_text(json.dumps(res))
    with pytest.raises(SchemaMismatch, match="schema version 2 .*re-run the command that made the run"):
        load_artifact(Results, tmp_path / "results.json")


def test_harness_runs_names_a_folder_it_cannot_read(tmp_path):
    from harness.api import run_status

    old, new = tmp_path / "old", tmp_path / "new"
    for run, version in ((old, 2), (new, SCHEMA_VERSION)):
        (run / "models" / "sft").mkdir(parents=True)
        man = json.loads(make_manifest().model_dump_json())
        man["schema_version"] = version
        (run / "manifest.json").write_text(json.dumps(man))
    status = run_status(old)
    assert "manifest.json was written by schema version 2 (this harness reads 3)" in status.status
    assert status.methods == ["sft"]  # what is on disk
    assert run_status(new).methods == ["sft", "cgd"] and run_status(new).status.startswith("partial")


def test_manifest_sections_round_trip_typed(tmp_path):
    man = make_manifest()
    save_artifact(tmp_path / "manifest.json", man)
    back = load_artifact(Manifest, tmp_path / "manifest.json")
    assert back == man and back.models["sft"].train.steps == 10 and back.models["base"].train is None
    assert back.seeds.run == 0 and back.git.commit == "abc123" and back.tasks["math500"].generation.max_new_tokens
    # A section typed closed refuses what it does not know, in one line naming the field.
    data = json.loads(man.model_dump_json())
    data["models"]["sft"]["train"]["own_recipe"] = True  # schema 2's flat copy
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(SchemaMismatch, match=r"models.sft.train.own_recipe: Extra inputs are not permitted"):
        load_artifact(Manifest, tmp_path / "manifest.json")


def test_engine_description_keeps_a_backends_own_settings():
    hf = EngineDescription.model_validate({"backend": "hf", "identity": "tiny@1:hf", "model": "/m", "adapter": None,
                                           "parts": {"weights": "w", "chat_template": "ct"}, "device": "cpu",
                                           "dtype": "float32", "batch_size": 8})
    api = EngineDescription.model_validate({"backend": "openai", "identity": "gpt@1:openai", "host": "api.x",
                                            "rpm": None, "usage": {"requests": 3}})
    assert hf.chat_template == "ct" and api.chat_template is None
    assert hf.settings() == {"backend": "hf", "device": "cpu", "dtype": "float32", "batch_size": 8}
    # An API engine has no dtype or batch size (not "None" settings to compare); its own settings are kept.
    assert api.settings() == {"backend": "openai", "host": "api.x", "rpm": None, "usage": {"requests": 3}}
    assert EngineDescription.model_validate(json.loads(api.model_dump_json())).settings() == api.settings()
