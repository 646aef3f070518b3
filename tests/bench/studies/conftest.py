"""Fixtures shared by the study tests."""

from __future__ import annotations

import sys
import types

import pytest

from bench.studies import framework, report

MACHINE = {"platform": "test", "processor": "synthetic", "cpus": 2, "torch": "0", "python": "3", "parallel_runs": 2}


@pytest.fixture
def frozen(monkeypatch):
    """Deterministic provenance: no scipy (the t table), fixed clock, machine and commit, no world build."""
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setattr(framework, "time", types.SimpleNamespace(time=lambda: 1000.0))
    monkeypatch.setattr(report, "machine", lambda n: {**MACHINE, "parallel_runs": n})
    monkeypatch.setattr(report, "git_commit", lambda: "0123456789ab")
    monkeypatch.setattr(framework.StudyContext, "build_world",
                        lambda self, world="style", n_builds=1, overrides=(): None)


@pytest.fixture
def no_builds(monkeypatch, frozen):
    """``frozen``, and the studies' world builds recorded instead of built: [(world, n_builds)]."""
    built = []
    monkeypatch.setattr(framework.StudyContext, "build_world",
                        lambda self, world="style", n_builds=1, overrides=(): built.append((world, n_builds)))
    return built
