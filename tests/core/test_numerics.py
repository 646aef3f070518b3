"""Pinned CPU numerics: the project sets its kernel variables itself, a build runs in the build profile."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core.numerics import MODE_VAR, PROFILE_VAR, PROFILES, check_profile, mode, profile
from core.paths import REPO_ROOT

PROBE = ("import json, os, core, torch; print(json.dumps({k: os.environ.get(k) for k in "
         "('MKL_CBWR', 'ATEN_CPU_CAPABILITY', 'ONEDNN_MAX_CPU_ISA')} | "
         "{'cap': torch.backends.cpu.get_cpu_capability()}))")


def _probe(**env) -> dict:
    full = {k: v for k, v in os.environ.items() if k not in (MODE_VAR, PROFILE_VAR, *PROFILES["run"])} | env
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, env=full, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_the_project_overrides_the_shells_kernel_settings():
    got = _probe(MKL_CBWR="AUTO", ATEN_CPU_CAPABILITY="default")
    assert got == {**PROFILES["run"], "cap": "AVX2"}


def test_the_build_profile_and_native_mode():
    assert _probe(**{PROFILE_VAR: "build"})["MKL_CBWR"] == "COMPATIBLE"
    native = _probe(**{MODE_VAR: "native", "MKL_CBWR": "AUTO"})
    assert native["MKL_CBWR"] == "AUTO" and native["ATEN_CPU_CAPABILITY"] is None


def test_this_process_runs_the_run_profile_and_refuses_to_build():
    assert mode() == "pinned" and profile() == "run"
    check_profile("run", "a test")
    with pytest.raises(RuntimeError, match="MKL_CBWR"):
        check_profile("build", "building the student")


def test_bad_mode_names_the_variable(monkeypatch):
    monkeypatch.setenv(MODE_VAR, "fast")
    with pytest.raises(ValueError, match=f"{MODE_VAR}='fast'"):
        mode()


def _child_numerics() -> tuple[str | None, str]:
    import torch

    return os.environ.get("MKL_CBWR"), torch.backends.cpu.get_cpu_capability()


def test_world_builds_run_in_processes_with_the_build_profile():
    from bench.world.tiny.build import _in_build_processes

    assert _in_build_processes(_child_numerics, [(), ()], 2) == [("COMPATIBLE", "AVX2")] * 2
    assert os.environ["MKL_CBWR"] == PROFILES["run"]["MKL_CBWR"]  # the parent is back in its own profile


def test_native_and_pinned_worlds_have_different_cache_keys(monkeypatch):
    from bench.config import compose_config
    from bench.world.tiny.build import model_key

    world = compose_config(["world=style"]).world
    pinned = model_key(world, "student")
    monkeypatch.setenv(MODE_VAR, "native")
    assert model_key(world, "student") != pinned
