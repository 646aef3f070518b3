"""Safe run reuse: fingerprints of the code and config that made a run folder, and the stale-run policies."""

from __future__ import annotations

import json
import re

import pytest

from bench.studies import fingerprint, report
from bench.studies.framework import StudyContext
from bench.studies.jobs import DEFAULT_LR, Job, train_job
from bench.studies.launcher import Launcher, StaleRunError, run_jobs
from tests.bench.studies.synthetic_runs import fake_train


class FakeLauncher(Launcher):
    name = "fake"

    def __init__(self):
        self.launched = []

    def launch(self, jobs):
        for job in jobs:
            fake_train(job.run_dir, job.overrides)
            self.launched.append(job.run_dir)
        return []


def job_at(tmp_path, lr=DEFAULT_LR) -> Job:
    return train_job(tmp_path / "runs", "OPD", "opd", 0, lr)


@pytest.fixture
def finished(tmp_path):
    """A run made through run_jobs (so with its fingerprint.json)."""
    launcher = FakeLauncher()
    run_jobs([job_at(tmp_path)], launcher)
    assert len(launcher.launched) == 1
    return job_at(tmp_path)


def test_launch_writes_the_fingerprint(finished):
    fp = json.loads((finished.run_dir / "fingerprint.json").read_text())
    assert fp["overrides"] == finished.overrides
    assert fp["config"]["trainer.lr"] == DEFAULT_LR and fp["config"]["trainer.threads"] == 1
    assert "bench/train/loop.py" in fp["code_files"]
    assert not any(f.startswith("bench/studies/") for f in fp["code_files"])
    assert "experiments/experiment/opd.yaml" in fp["code_files"]
    assert fingerprint.stale_reason(finished) is None


def test_matching_fingerprint_is_reused(tmp_path, finished):
    launcher = FakeLauncher()
    run_jobs([job_at(tmp_path)], launcher)
    assert launcher.launched == []


def test_changed_override_is_refused_naming_the_folder(tmp_path, finished):
    changed = Job(finished.run_dir, [o if not o.startswith("trainer.lr=") else "trainer.lr=3e-05"
                                     for o in finished.overrides])
    launcher = FakeLauncher()
    with pytest.raises(StaleRunError) as err:
        run_jobs([changed], launcher)
    msg = str(err.value)
    assert str(finished.run_dir) in msg and "trainer.lr: 2e-05 -> 3e-05" in msg
    assert "--stale rerun" in msg and "--stale reuse" in msg
    assert launcher.launched == []


def test_missing_fingerprint_is_refused(tmp_path):
    job = job_at(tmp_path)
    fake_train(job.run_dir, job.overrides)  # a finished folder made without a launcher (or before fingerprints)
    with pytest.raises(StaleRunError, match=re.escape(str(job.run_dir)) + ": no fingerprint.json"):
        run_jobs([job], FakeLauncher())


def test_stale_rerun_moves_the_folder_aside_and_retrains(tmp_path, finished):
    old_fp = fingerprint.read(finished.run_dir)
    changed = job_at(tmp_path, lr=3e-5)
    changed.run_dir = finished.run_dir
    launcher = FakeLauncher()
    run_jobs([changed], launcher, stale="rerun")
    assert launcher.launched == [finished.run_dir]
    aside = finished.run_dir.with_name(f"seed0.stale-{fingerprint.short(old_fp)}")
    assert json.loads((aside / "summary.json").read_text())["lr"] == DEFAULT_LR
    assert json.loads((finished.run_dir / "summary.json").read_text())["lr"] == 3e-5
    assert fingerprint.stale_reason(changed) is None


def test_stale_reuse_uses_the_folder_and_records_it(tmp_path, finished, monkeypatch):
    monkeypatch.setattr(fingerprint, "code_fingerprint",
                        lambda root=None: {"code_sha256": "other", "code_files": {"bench/train/loop.py": "x"}})
    ctx = StudyContext("t", args=None, launcher=FakeLauncher(), stale="reuse")
    ctx.run([finished])
    ctx.run([finished])  # recorded once
    assert ctx.launcher.launched == []
    record = ctx.stale_record()["stale_runs_reused"]
    assert [r["run_dir"] for r in record] == [str(finished.run_dir)] and "code differs" in record[0]["differs"]
    note = report.stale_note({"stale_runs_reused": record})
    assert "--stale reuse" in note[-1] and str(finished.run_dir) in note[-1]
    assert StudyContext("t", args=None, launcher=FakeLauncher()).stale_record() == {} and report.stale_note({}) == []


def test_code_change_is_detected(tmp_path, finished, monkeypatch):
    real = fingerprint.code_fingerprint()
    files = {**real["code_files"], "bench/train/loop.py": "changed"}
    monkeypatch.setattr(fingerprint, "code_fingerprint",
                        lambda root=None: {"code_sha256": "changed", "code_files": files})
    with pytest.raises(StaleRunError, match=r"code differs: bench/train/loop\.py"):
        run_jobs([job_at(tmp_path)], FakeLauncher())


def write_tree(root, body: str, doc: str = "Docstring.", comment: str = "# comment", yaml_comment: str = "# c"):
    (root / "bench" / "train").mkdir(parents=True, exist_ok=True)
    (root / "bench" / "studies").mkdir(parents=True, exist_ok=True)
    (root / "core").mkdir(exist_ok=True)
    (root / "experiments" / "trainer").mkdir(parents=True, exist_ok=True)
    (root / "bench" / "train" / "loop.py").write_text(
        f'"""{doc}"""\n{comment}\n\n\ndef step(x):\n    """{doc}"""\n    {comment}\n    return {body}\n\n\n'
        f'class A:\n    """{doc}"""\n\n    def f(self):\n        """{doc}"""\n        return 1\n')
    (root / "core" / "io.py").write_text("X = 1\n")
    (root / "bench" / "studies" / "table2.py").write_text(f"Y = {len(body)}\n")
    (root / "experiments" / "trainer" / "tiny.yaml").write_text(f"{yaml_comment}\nlr: 2.0e-5\n")


def code_hash(root):
    fingerprint.code_fingerprint.cache_clear()
    return fingerprint.code_fingerprint(root)


def test_docstring_and_comment_edits_keep_the_code_fingerprint(tmp_path):
    write_tree(tmp_path, "x + 1")
    base = code_hash(tmp_path)
    assert set(base["code_files"]) == {"bench/train/loop.py", "core/io.py", "experiments/trainer/tiny.yaml"}
    write_tree(tmp_path, "x + 1", doc="Another docstring,\n    over two lines.", comment="# another comment\n",
               yaml_comment="# another yaml comment")
    assert code_hash(tmp_path) == base
    write_tree(tmp_path, "x   +   1")  # formatting
    assert code_hash(tmp_path)["code_sha256"] == base["code_sha256"]
    write_tree(tmp_path, "x + 2")  # a real change, and bench/studies/ (excluded) changes with it
    changed = code_hash(tmp_path)
    assert changed["code_sha256"] != base["code_sha256"]
    want = {"code_sha256": changed["code_sha256"], "code_files": changed["code_files"],
            "config_sha256": "c", "config": {}}
    assert fingerprint.difference({**base, "config_sha256": "c", "config": {}}, want) == \
        "code differs: bench/train/loop.py"
    (tmp_path / "experiments" / "trainer" / "tiny.yaml").write_text("lr: 3.0e-5\n")
    assert "experiments/trainer/tiny.yaml" in fingerprint.difference(
        {**changed, "config_sha256": "c"}, {**code_hash(tmp_path), "config_sha256": "c", "config": {}})
    fingerprint.code_fingerprint.cache_clear()
