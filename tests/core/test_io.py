"""JSONL reading (core/io.py): a torn last line is dropped on resume; any other bad line names file and line."""

from __future__ import annotations

import json

import pytest

from core.io import read_jsonl, resume_jsonl

ROWS = [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25}]
TEXT = "".join(json.dumps(r) + "\n" for r in ROWS)


def test_resume_drops_a_torn_last_line_and_says_so(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_text(TEXT + '{"step": 3, "lo')
    assert resume_jsonl(path) == ROWS
    assert path.read_text() == TEXT  # rewritten without it, so the next append starts on a fresh line
    err = capsys.readouterr().err.strip()
    assert err == f"{path}: dropped its torn last line 3 (a write cut short by a crash); that record is written " \
                  "again"


def test_resume_leaves_an_intact_file_alone_and_ends_a_cut_newline(tmp_path, capsys):
    path = tmp_path / "samples.jsonl"
    path.write_text(TEXT)
    assert resume_jsonl(path) == ROWS and path.read_text() == TEXT
    path.write_text(TEXT.rstrip("\n"))  # the last record whole, only its newline missing
    assert resume_jsonl(path) == ROWS and path.read_text() == TEXT
    assert resume_jsonl(tmp_path / "missing.jsonl") == [] and not (tmp_path / "missing.jsonl").exists()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("reader", [read_jsonl, resume_jsonl])
def test_a_bad_middle_line_is_an_error_naming_file_and_line(tmp_path, reader):
    path = tmp_path / "effopd.jsonl"
    path.write_text(TEXT.replace('"loss": 0.5}', '"loss": 0.5') + '{"step": 3}\n')
    with pytest.raises(ValueError, match=rf"{path}: line 1 is not JSON \(column .*\); fix or delete that line"):
        reader(path)
    assert '"step": 3' in path.read_text()  # nothing dropped


def test_read_names_file_and_line_of_a_torn_last_line(tmp_path):
    path = tmp_path / "evals.jsonl"
    path.write_text(TEXT + "\n" + '{"step": 3, "lo')
    with pytest.raises(ValueError, match=rf"{path}: line 4 is not JSON \(column .*\); delete .*cut short by a crash"):
        read_jsonl(path)
