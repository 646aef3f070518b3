"""Pinned CPU numerics: which kernels torch may pick, so that a result does not depend on the CPU it ran on.

A tiny world is trained for hundreds of steps, and a last-bit difference in one matrix product grows into a
different model. CPU kernels differ by instruction set and vendor: ATen dispatches its vectorised kernels on the
CPU's capability (AVX2, AVX-512), MKL picks a code path per CPU model and vendor, oneDNN has its own dispatch.
Each is capped by an environment variable that its library reads when it starts, so ``pin_environment`` sets
them before torch is imported (``core/__init__.py`` calls it; ``bench`` and ``evals`` import ``core`` first).

Two profiles:

- ``build`` (world builds, bench/world/tiny/build.py runs them in processes of their own): ATen's AVX2
  kernels, MKL's conditional numerical reproducibility on its ``COMPATIBLE`` branch and oneDNN capped at AVX2.
  MKL honours its AVX2 branch only on Intel CPUs (an AMD CPU gets MKL's own path whatever ``MKL_CBWR`` says),
  so only ``COMPATIBLE`` gives one matrix product on both vendors; it costs build time (docs/worlds.md).
- ``run`` (everything else: training runs, evaluations, tests): ATen and oneDNN capped at AVX2 and
  ``MKL_CBWR=AVX2``; the same kernels on every Intel CPU with or without AVX-512, at no measurable cost.
  Runs on an AMD and an Intel CPU may still differ in the last bits (docs/worlds.md, "Numerics").

``EFFOPD_NUMERICS=native`` leaves every library to choose (faster on some CPUs, another world on every CPU
type). Thread counts are pinned where they matter (a world build trains on one thread).
"""

from __future__ import annotations

import os

MODE_VAR = "EFFOPD_NUMERICS"
MODES = ("pinned", "native")
PROFILE_VAR = "EFFOPD_NUMERICS_PROFILE"  # set by the world builder for the processes it starts
PROFILES = {
    "run": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "build": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
# What torch.backends.cpu.get_cpu_capability() reports when ATEN_CPU_CAPABILITY=avx2 took effect.
PINNED_CAPABILITY = "AVX2"


def mode() -> str:
    value = os.environ.get(MODE_VAR, "pinned")
    if value not in MODES:
        raise ValueError(f"{MODE_VAR}={value!r}; use one of {MODES} (pinned: the same kernels on every x86 CPU, "
                         "the default; native: each library picks its fastest path for this CPU)")
    return value


def profile() -> str:
    """The profile of this process: "build" inside a world build, "run" otherwise, "native" when unpinned."""
    if mode() == "native":
        return "native"
    value = os.environ.get(PROFILE_VAR, "run")
    if value not in PROFILES:
        raise ValueError(f"{PROFILE_VAR}={value!r}; use one of {list(PROFILES)} (the world builder sets it)")
    return value


def pin_environment() -> None:
    """Set this process's profile's variables (over whatever the shell set) unless ``EFFOPD_NUMERICS=native``.

    Called before torch is imported; ``check_profile`` reports a process that imported torch first and got
    other kernels."""
    if profile() != "native":
        os.environ.update(PROFILES[profile()])


def profile_env(name: str) -> dict[str, str]:
    """The variables a child process needs to start in profile ``name`` (the pinned ones and the marker)."""
    return {PROFILE_VAR: name, **PROFILES[name]}


def status() -> dict:
    """The numerics in force in this process: mode, profile, the pinned variables' values, ATen's capability."""
    import torch

    names = sorted({k for p in PROFILES.values() for k in p})
    return {"mode": mode(), "profile": profile(), "env": {k: os.environ.get(k) for k in names},
            "aten_capability": torch.backends.cpu.get_cpu_capability()}


def check_profile(name: str, what: str) -> None:
    """Refuse ``what`` (e.g. "building the student") unless this process runs profile ``name`` (or native)."""
    if mode() == "native":
        return
    s = status()
    wrong = {k: s["env"].get(k) for k, v in PROFILES[name].items() if s["env"].get(k) != v}
    if s["aten_capability"] != PINNED_CAPABILITY:
        wrong["aten_capability"] = s["aten_capability"]
    if wrong:
        raise RuntimeError(
            f"{what} needs the {name!r} CPU numerics, but this process runs {wrong} (wanted {PROFILES[name]}). "
            f"Start it with {PROFILE_VAR}={name} and import bench or core before torch, or set {MODE_VAR}=native "
            "to use this CPU's own kernels (another world than the reference).")
