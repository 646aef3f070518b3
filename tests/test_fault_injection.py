"""The kill -9 matrix of tests/fault_injection.py in ``make test``, and the fault switch itself (core/faults.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.faults import ENV, POINTS, crash_point
from tests.fault_injection import ok, run_matrix


def test_the_switch_is_off_without_the_variable_and_refuses_a_bad_one(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    crash_point("step", 2)  # nothing happens
    monkeypatch.setenv(ENV, "step@2")
    crash_point("step", 3)
    crash_point("eval", 2)
    monkeypatch.setenv(ENV, "midstep@2")
    with pytest.raises(ValueError, match="EFFOPD_FAULT='midstep@2'"):
        crash_point("step", 2)


def test_a_matching_point_is_a_sigkill():
    code = "from core.faults import crash_point\ncrash_point('eval', 1)\ncrash_point('eval', 2)\nprint('alive')"
    done = subprocess.run([sys.executable, "-c", code], env={ENV: "eval@2", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60, cwd=__import__("core.paths").paths.REPO_ROOT)
    assert done.returncode == -9 and done.stdout == ""


@pytest.mark.slow
def test_kill_9_at_every_fault_point_then_resume_equals_the_uninterrupted_run(micro_cache, tmp_path):
    rows = run_matrix(micro_cache, tmp_path)
    assert [r["point"] for r in rows] == list(POINTS)
    for r in rows:
        assert ok(r), r
