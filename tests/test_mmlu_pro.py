"""MMLU-Pro offline: prompt building and scoring on hand-made records, and the DataMissing message."""
import json

import pytest

from harness.tasks.data import DataMissing
from harness.tasks.mmlu_pro import MMLUPro
from harness.tasks.registry import get_task


def _row(qid, category, question, options, answer, cot=""):
    return {"question_id": qid, "question": question, "options": options, "answer": answer,
            "answer_index": "ABCDEFGHIJ".index(answer), "cot_content": cot, "category": category, "src": "handmade"}


def _write(folder, name, rows):
    (folder / name).write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    d = tmp_path / "mmlu_pro"
    d.mkdir()
    val = [
        _row(100 + i, "math", f"What is {i} + 1?", [str(i), str(i + 1), "N/A"], "B",
             f"A: Let's think step by step. {i} plus one is {i + 1}. The answer is (B).")
        for i in range(6)
    ] + [_row(200, "law", "Is a verbal contract binding?", ["Never", "Often"], "B",
              "A: Let's think step by step. Often it is. The answer is (B).")]
    test = [
        _row(1, "math", "What is 2 * 3?", ["5", "6", "N/A", "7", "8", "9", "10", "11", "12", "13"], "B"),
        _row(2, "law", "Can a minor sign a lease?", ["Yes", "Usually not", "N/A"], "B"),
    ]
    _write(d, "test.jsonl", test)
    _write(d, "validation.jsonl", val)
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    return tmp_path


def test_prompt_building(mirror):
    task = get_task("mmlu_pro")
    assert isinstance(task, MMLUPro) and task.generation.max_new_tokens == 2048
    assert task.generation.stop == ("Question:",)
    docs = task.docs()
    assert [d.id for d in docs] == ["1", "2"] and [d.gold for d in docs] == ["B", "B"]
    p = docs[0].prompt
    assert isinstance(p, str) and p.startswith("Below are multiple-choice questions about math")
    assert p.count("Question:\n") == 6  # 5 exemplars of the same category + the question
    assert "What is 5 + 1?" not in p  # only the first five validation rows
    assert "Answer: Let's think step by step. 0 plus one is 1. The answer is (B).\n\n" in p
    assert "N/A" not in p
    assert p.endswith("Options:\nA. 5\nB. 6\nC. 7\nD. 8\nE. 9\nF. 10\nG. 11\nH. 12\nI. 13\n"
                      "Answer: Let's think step by step.")
    assert docs[0].meta["n_options"] == 9 and docs[1].meta["category"] == "law"
    assert docs[1].prompt.count("Question:\n") == 2
    chat = MMLUPro(chat=True, categories="law").docs()
    assert len(chat) == 1 and chat[0].prompt[0]["role"] == "user"


def test_scoring(mirror):
    task = MMLUPro()
    d = task.docs()[0]
    s = task.score(d, [" 2 times 3 is 6. The answer is (B).\n"])
    assert s.metrics == {"accuracy": 1.0, "strict_accuracy": 1.0} and s.extracted == "B"
    s = task.score(d, [" 2 times 3 is 6.\nAnswer: B"])
    assert s.metrics == {"accuracy": 1.0, "strict_accuracy": 0.0} and s.details["how"] == "answer_colon"
    s = task.score(d, [" The answer is (A)."])
    assert s.score == 0.0
    s = task.score(d, ["no letter here"])
    assert s.score == 0.0 and s.details["extraction_failed"]
    agg = task.aggregate([task.score(d, ["The answer is (B)"]), task.score(d, ["The answer is (C)"])])
    assert agg["accuracy"] == 0.5


def test_data_missing_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataMissing) as e:
        MMLUPro().docs()
    msg = str(e.value)
    assert "mmlu_pro" in msg and "TIGER-Lab/MMLU-Pro" in msg and "fix:" in msg and "\n" not in msg
