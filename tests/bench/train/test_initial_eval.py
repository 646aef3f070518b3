"""The step-0 evaluation cache (bench/train/initial_eval.py): one evaluation per student and setting."""

from __future__ import annotations

import json

import pytest

from bench.train import initial_eval as ie
from bench.train.loop import train
from core.io import read_jsonl


class FakeWorld:
    def __init__(self, path, prompts=("1+2=", "3+4=")):
        self.student_path, self.criterion = path, "answer_in_style"
        self.test = [type("P", (), {"prompt": p})() for p in prompts]
        self.selection = []


@pytest.fixture
def counted(monkeypatch):
    calls = []

    def fake_eval(cfg, engine, world, step, train_seconds, with_avg_k):
        calls.append(step)
        return {"step": 0, "train_seconds": 0.0, "test/greedy": 0.25, "test/avg@4": 0.5, "eval_seconds": 1.0}

    monkeypatch.setattr(ie, "periodic_eval", fake_eval)
    return calls


def _cfg(micro_cfg, cache, *extra):
    return micro_cfg([f"world.cache_dir={cache}", *extra])


def test_the_second_run_reads_the_record_the_first_wrote(micro_cfg, tmp_path, counted):
    student = tmp_path / "student"
    student.mkdir()
    (student / "model.safetensors").write_bytes(b"weights")
    cfg, world = _cfg(micro_cfg, tmp_path / "cache"), FakeWorld(student)
    first = ie.initial_eval(cfg, None, world)
    second = ie.initial_eval(cfg, None, world)
    assert counted == [0] and first["test/greedy"] == second["test/greedy"] == 0.25
    assert {k: v for k, v in first.items() if k != "eval_seconds"} == \
        {k: v for k, v in second.items() if k != "eval_seconds"}
    assert second["eval_seconds"] < 1.0
    # anything the record depends on is in the key: other weights, other prompts, another engine, no cache
    (student / "model.safetensors").write_bytes(b"trained further")
    ie.initial_eval(cfg, None, world)
    ie.initial_eval(cfg, None, FakeWorld(student, ("5+6=",)))
    ie.initial_eval(_cfg(micro_cfg, tmp_path / "cache", "rollout.engine=hf"), None, world)
    ie.initial_eval(_cfg(micro_cfg, tmp_path / "cache", "trainer.eval_cache=false"), None, world)
    assert counted == [0] * 5
    # an unreadable cache file is evaluated again and rewritten
    for path in (tmp_path / "cache").glob("eval0-*.json"):
        path.write_text("{not json")
    ie.initial_eval(cfg, None, world)
    assert len(counted) == 6
    assert any(json.loads(p.read_text()).get("test/greedy") == 0.25
               for p in (tmp_path / "cache").glob("eval0-*.json") if p.read_text() != "{not json")


def test_a_hub_id_student_is_not_cached(micro_cfg, tmp_path, counted):
    cfg = _cfg(micro_cfg, tmp_path / "cache")
    ie.initial_eval(cfg, None, FakeWorld("Qwen/Qwen3-1.7B"))
    ie.initial_eval(cfg, None, FakeWorld("Qwen/Qwen3-1.7B"))
    assert counted == [0, 0] and not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_runs_from_one_student_share_a_bit_identical_step0_line(micro_cfg, tmp_path):
    lines = []
    for name, extra in (("opd", ["experiment=opd"]), ("effopd", ["experiment=effopd"]),
                        ("uncached", ["experiment=opd", "trainer.eval_cache=false"])):
        train(micro_cfg(extra, out=tmp_path / name))
        first = read_jsonl(tmp_path / name / "evals.jsonl")[0]
        lines.append({k: v for k, v in first.items() if k != "eval_seconds"})
    assert lines[0] == lines[1] == lines[2] and lines[0]["step"] == 0 and "test/avg@2" in lines[0]
