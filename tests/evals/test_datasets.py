"""Benchmark registry and loader: checksums, data-dir resolution, clear errors, field mapping, templates."""

from __future__ import annotations

import shutil

import pytest

from evals.datasets import BENCHMARKS, DataError, load_benchmark, render, resolve_data_dir, template_hash
from evals.datasets.loader import DATA_DIR_ENV, DEFAULT_DATA_DIR, _to_examples
from evals.datasets.registry import Fields

SHARED = DEFAULT_DATA_DIR
needs_shared = pytest.mark.skipif(not (SHARED / "MANIFEST.md").exists(),
                                  reason=f"shared benchmark data not present at {SHARED}")
FILE_BENCHMARKS = [name for name, b in BENCHMARKS.items() if b.local_file]


def test_registry_covers_the_issue_list():
    expected = {"aime24", "aime25", "hmmt25_feb", "hmmt25_nov", "math500", "amc23", "minerva", "olympiadbench",
                "gsm8k", "deepmath", "humanevalplus", "mbppplus", "tinyworld"}
    assert expected == set(BENCHMARKS)
    for b in BENCHMARKS.values():
        if b.local_file:
            assert len(b.sha256) == 64 and b.rows > 0 and b.hub_id and b.local_fields and b.hub_fields


@needs_shared
@pytest.mark.parametrize("name", FILE_BENCHMARKS)
def test_every_local_file_matches_the_manifest(name):
    loaded = load_benchmark(name, SHARED, source="local")
    assert len(loaded.examples) == BENCHMARKS[name].rows
    assert loaded.sha256 == BENCHMARKS[name].sha256 and loaded.source.startswith("local:")
    assert len({e.id for e in loaded.examples}) == len(loaded.examples)  # ids are unique
    assert all(e.problem for e in loaded.examples)
    if BENCHMARKS[name].kind == "math":
        assert all(e.answer for e in loaded.examples)


@needs_shared
def test_answers_are_normalised_text():
    amc = load_benchmark("amc23", SHARED).examples
    assert amc[0].answer == "27"  # stored as the float 27.0
    aime25 = load_benchmark("aime25", SHARED).examples
    assert aime25[0].answer == "70"  # stored as an int
    math500 = load_benchmark("math500", SHARED).examples
    assert math500[0].meta == {"subject": "Precalculus", "level": 2}


@needs_shared
def test_checksum_mismatch_names_the_file_and_both_fixes(tmp_path):
    (tmp_path / "math").mkdir()
    shutil.copy(SHARED / "math" / "aime24.jsonl", tmp_path / "math" / "aime24.jsonl")
    with open(tmp_path / "math" / "aime24.jsonl", "a") as fh:
        fh.write('{"id": 999, "problem": "extra", "answer": "1"}\n')
    with pytest.raises(DataError) as err:
        load_benchmark("aime24", tmp_path)
    msg = str(err.value)
    assert "checksum mismatch" in msg and str(tmp_path / "math" / "aime24.jsonl") in msg
    assert BENCHMARKS["aime24"].sha256 in msg
    assert DATA_DIR_ENV in msg and "source=hub" in msg and "math-ai/aime24" in msg


def test_missing_local_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError) as err:
        load_benchmark("aime25", tmp_path, source="local")
    msg = str(err.value)
    assert f"no file {tmp_path / 'math' / 'aime25.jsonl'}" in msg and DATA_DIR_ENV in msg and "source=hub" in msg


@pytest.mark.slow
def test_missing_file_offline_falls_back_to_the_hub_then_explains(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        load_benchmark("gsm8k", tmp_path, source="auto")
    msg = str(err.value)
    assert "no file" in msg and "openai/gsm8k" in msg and "from the hub failed" in msg


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert resolve_data_dir() == DEFAULT_DATA_DIR.resolve()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert resolve_data_dir() == (tmp_path / "env").resolve()
    assert resolve_data_dir(tmp_path / "explicit") == (tmp_path / "explicit").resolve()


def test_unknown_benchmark_and_source():
    with pytest.raises(ValueError, match="unknown benchmark 'aime26'.*aime24"):
        load_benchmark("aime26")
    with pytest.raises(ValueError, match="source='web'"):
        load_benchmark("aime24", source="web")


def test_hub_rows_map_fields_and_gsm8k_answers():
    bench = BENCHMARKS["gsm8k"]
    rows = [{"question": "q1", "answer": "work...\n#### 1,234"}, {"question": "q2", "answer": "x\n#### 7"}]
    ex = _to_examples(rows, bench.hub_fields, bench, "hub dataset openai/gsm8k")
    assert [(e.id, e.problem, e.answer) for e in ex] == [("0", "q1", "1234"), ("1", "q2", "7")]
    with pytest.raises(DataError, match="no field 'question'.*registry entry for 'gsm8k'"):
        _to_examples([{"problem": "q"}], Fields("question", "answer"), bench, "hub dataset openai/gsm8k")


def test_tiny_world_test_split_is_generated():
    loaded = load_benchmark("tinyworld", tiny_n=5)
    assert loaded.source == "generated" and len(loaded.examples) == 5
    e = loaded.examples[0]
    assert e.problem == f"{e.meta['a']}+{e.meta['b']}=" and e.answer == str(e.meta["a"] + e.meta["b"])


def test_templates():
    prompt = render("math_boxed", "What is 1+1?")
    assert prompt == ("What is 1+1? Please reason step by step, and put your final answer within \\boxed{}.")
    assert render("raw", "12+34=") == "12+34="
    assert template_hash("math_boxed") != template_hash("raw") and len(template_hash("raw")) == 16
    with pytest.raises(ValueError, match="unknown prompt template"):
        render("nope", "x")
