"""The eval runner end to end on a tiny-world checkpoint: records, summary, resume (torn last line included), the
results-folder lock, trainer agreement."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from core.config_diff import ConfigChanged
from core.run_lock import FolderInUse, folder_lock
from evals.config import compose_eval_config
from evals.run import run_eval


@pytest.fixture
def student_path(micro_cache):
    from bench.config import compose_config
    from bench.world.tiny.build import model_key
    from tests.conftest import MICRO_WORLD

    world = compose_config(["world=style", *MICRO_WORLD, f"world.cache_dir={micro_cache}"]).world
    return Path(micro_cache) / model_key(world, "student")


def eval_cfg(model: Path, out: Path, *extra: str):
    return compose_eval_config([f"model={model}", "benchmark=tinyworld", "tiny_n=6", "n=3", "temperature=1.0",
                                "max_new_tokens=40", "engine=qwen3_fast", "batch_prompts=2", "criterion=answer",
                                "progress_bar=false", f"output_dir={out}", *extra])


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_tiny_world_eval_writes_records_and_summary(student_path, tmp_path):
    summary = run_eval(eval_cfg(student_path, tmp_path / "ev"))
    rows = read(tmp_path / "ev" / "samples.jsonl")
    assert len(rows) == 18 and {r["sample_index"] for r in rows} == {0, 1, 2}
    keys = {"problem_id", "sample_index", "prompt", "response", "extracted", "status", "score", "prompt_tokens",
            "response_tokens", "finish_reason"}
    assert keys <= set(rows[0])
    assert all(r["status"] in {"correct", "wrong", "no_answer", "truncated"} for r in rows)
    assert all((r["status"] == "correct") == (r["score"] == 1.0) for r in rows)
    m = summary["metrics"]
    assert m["avg@3"] == pytest.approx(sum(r["score"] for r in rows) / 18)
    assert m["pass@3"] >= m["avg@3"]
    proto = summary["protocol"]
    assert proto["benchmark"] == "tinyworld" and proto["sampling"]["n"] == 3 and proto["model_fingerprint"]
    assert proto["grader"] == {"name": "tinyworld", "kind": "tiny", "criterion": "answer"}
    assert proto["prompt_template"] == "raw" and proto["chat_template"] is False
    on_disk = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert on_disk["metrics"] == m


@pytest.mark.slow
def test_resumed_eval_matches_an_uninterrupted_one(student_path, tmp_path, capsys):
    run_eval(eval_cfg(student_path, tmp_path / "full"))
    full = read(tmp_path / "full" / "samples.jsonl")
    # Interrupt after the first chunk (2 problems x 3 samples) and one more sample, then rerun: only the rest is
    # generated. The crash tore the second chunk's second sample mid-write: it is dropped (said in one line) and
    # generated again.
    part = tmp_path / "part"
    part.mkdir()
    torn = json.dumps(full[7])[:40]
    (part / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in full[:7]) + torn)
    capsys.readouterr()
    run_eval(eval_cfg(student_path, part))
    assert [line for line in capsys.readouterr().err.splitlines() if "torn" in line] == \
        [f"{part / 'samples.jsonl'}: dropped its torn last line 8 (a write cut short by a crash); that record is "
         "written again"]
    resumed = read(part / "samples.jsonl")
    key = lambda r: (r["problem_id"], r["sample_index"])  # noqa: E731
    assert sorted(map(key, resumed)) == sorted(map(key, full))
    assert {key(r): r["response"] for r in resumed} == {key(r): r["response"] for r in full}


@pytest.mark.slow
def test_a_rerun_under_another_protocol_refuses_naming_the_keys(student_path, tmp_path):
    """Rerunning into a folder with temperature 0 and seed 7 would reuse the temperature-1 samples under a protocol
    that says temperature 0: it refuses, listing the keys, and leaves the folder as it was."""
    out = tmp_path / "ev"
    run_eval(eval_cfg(student_path, out, "tiny_n=2"))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}
    with pytest.raises(ConfigChanged, match=r"differs from .*config.json in 2 key\(s\): seed: 0 -> 7; temperature: "
                                            r"1.0 -> 0.0\. .*resume_may_change=\[seed,temperature\]"):
        run_eval(eval_cfg(student_path, out, "tiny_n=2", "temperature=0", "seed=7"))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"} == before
    run_eval(eval_cfg(student_path, out, "tiny_n=2", "limit=1", "k=2"))  # neither changes what a sample is
    with pytest.raises(ValueError, match="resume_may_change names 'temprature'"):
        run_eval(eval_cfg(student_path, out, "tiny_n=2", "resume_may_change=[temprature]"))


@pytest.mark.slow
def test_a_corrupt_line_before_the_last_is_an_error_naming_file_and_line(student_path, tmp_path):
    run_eval(eval_cfg(student_path, tmp_path / "ev", "tiny_n=2"))
    path = tmp_path / "ev" / "samples.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][:30] + "\n" + "".join(lines[3:]))
    with pytest.raises(ValueError, match=rf"{path}: line 3 is not JSON \(column .*\); fix or delete that line"):
        run_eval(eval_cfg(student_path, tmp_path / "ev", "tiny_n=2"))


def test_a_second_eval_into_a_locked_folder_refuses_before_loading_the_model(tmp_path):
    """Two evals appending to one samples.jsonl would duplicate samples: the second refuses, naming the holder."""
    out = tmp_path / "ev"
    out.mkdir()
    (out / "samples.jsonl").write_text('{"problem_id": "p", "sample_index": 0}\n')
    with folder_lock(out):  # this process plays the first eval; the model path does not exist, and is never read
        with pytest.raises(FolderInUse, match=rf"{out} is in use by pid {os.getpid()} on host "):
            run_eval(eval_cfg(tmp_path / "no-model", out))
    assert (out / "samples.jsonl").read_text() == '{"problem_id": "p", "sample_index": 0}\n'
    assert not (out / "config.json").exists()


@pytest.mark.slow
def test_greedy_eval_agrees_with_the_trainers_periodic_eval(student_path, tmp_path):
    """Same model, problems and criterion: the runner's greedy responses are the trainer's eval generations."""
    import torch
    from transformers import AutoTokenizer

    from bench.world import load_model
    from core.rollout import SamplingParams, make_engine
    from evals.datasets.tinyworld_task import sample_problems

    run_eval(eval_cfg(student_path, tmp_path / "g", "n=1", "temperature=0", "criterion=answer_in_style"))
    rows = read(tmp_path / "g" / "samples.jsonl")
    tok = AutoTokenizer.from_pretrained(student_path)
    engine = make_engine("qwen3_fast", load_model(student_path, trainable=False), tok)
    problems = sample_problems("test", 6, seed=0, digits=3)
    with torch.no_grad():
        batch = engine.generate([p.prompt for p in problems], 1, SamplingParams(0.0, 1.0, 40, logprobs=False))
    assert [r["response"] for r in rows] == batch.texts


@pytest.mark.parametrize("response,truncated,criterion,status", [
    ("target", False, "answer_in_style", "correct"),
    ("base", False, "answer", "correct"),
    ("base", False, "answer_in_style", "wrong"),  # right sum, old style
    ("7+5=12", False, "answer", "no_answer"),
    ("7+5=12", True, "answer", "truncated"),
    ("wrong_sum", False, "answer", "wrong"),
])
def test_tiny_world_statuses_follow_the_trainers_criterion(response, truncated, criterion, status):
    from evals.datasets import Example
    from evals.datasets.tinyworld_task import Style, make_problem, render_solution, score_response
    from evals.grading import grade_tiny

    p = make_problem(357, 475)
    text = {"target": render_solution(357, 475, Style.target()), "base": render_solution(357, 475, Style.base()),
            "wrong_sum": "\\boxed{833}"}.get(response, response)
    g = grade_tiny(Example(p.uid, p.prompt, p.answer, {"a": p.a, "b": p.b}), text, truncated, criterion)
    assert g.status == status and g.score == score_response(p, text, criterion)


@pytest.mark.slow
def test_maths_benchmark_through_the_grader_pool(student_path, tmp_path):
    """A tiny-world model on AIME: nothing is right, but every sample is generated, graded and counted."""
    from evals.datasets.loader import DEFAULT_DATA_DIR

    if not (DEFAULT_DATA_DIR / "math" / "aime24.jsonl").exists():
        pytest.skip(f"shared benchmark data not present at {DEFAULT_DATA_DIR}")
    cfg = compose_eval_config([f"model={student_path}", "benchmark=aime24", "limit=2", "n=2", "max_new_tokens=8",
                               "engine=qwen3_fast", "progress_bar=false", f"output_dir={tmp_path / 'a'}",
                               f"data_dir={DEFAULT_DATA_DIR}", "grader_workers=1"])
    summary = run_eval(cfg)
    rows = read(tmp_path / "a" / "samples.jsonl")
    assert len(rows) == 4 and all(r["score"] == 0.0 for r in rows)
    assert sum(summary["metrics"]["status_counts"].values()) == 4
    assert summary["protocol"]["dataset_sha256"] and summary["protocol"]["grader"]["name"] == "math_verify"


@pytest.mark.slow
@pytest.mark.parametrize("override,match", [("n=0", "n=0"), ("k=5", "k=5"), ("limit=-1", "limit=-1"),
                                            ("benchmark=aime99", "unknown benchmark 'aime99'")])
def test_bad_config_is_a_clear_error(student_path, tmp_path, override, match):
    with pytest.raises(ValueError, match=match):
        run_eval(eval_cfg(student_path, tmp_path / "bad", override))


def test_unknown_key_fails_loudly():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        compose_eval_config(["model=x", "temprature=1.0"])
