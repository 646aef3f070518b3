"""``python -m bench.leaderboard reproduce BUNDLE``: a maintainer re-runs one of a bundle's runs at its commit.

Everything in a bundle (curves, entries, hashes, digest) is something a submitter can recompute, so a consistent
bundle proves only that it is consistent. A reproduction is what makes an entry ``reproduced``:

1. the bundle must validate, and its commit must be in this repository's history (``git merge-base
   --is-ancestor COMMIT HEAD``): a commit nobody can check out proves nothing;
2. the source tree of that commit (``git archive``) re-runs the stored config of one of its runs (default: the
   first seed of its best submitted method) from the schema of that commit, with only the output folder, the
   world cache and the logging changed;
3. the world the re-run trained in is compared with the bundle's (``models``: the student's and teacher's weight
   digests): a **different world** (another CPU built other tiny-world models, or other hub weights) makes one
   run's numbers another draw, not a reproduction: the verdict is ``different-world`` and the way to compare is
   over world builds (the study's verdict and interval, docs/worlds.md);
4. otherwise the new run's steps to the bundle's target and its final accuracy (the track's metric and final
   window) are compared with the bundle's curve for that (method, seed): exactly when the world is identical
   and this machine has the bundle's torch version and CPU model (the tiny-cpu track is bit-identical there),
   else (identical world, other kernels in the runs; or a world that cannot be compared) within the track's
   ``reproduce_tolerance``.

The verdict goes to ``results/leaderboard/reproductions/<bundle id>.json`` (atomic), pinned to the bundle's
digest: editing the bundle afterwards drops it back to ``self-reported``. The board (render.py) shows each entry's
status, and only ``reproduced`` entries can rank first. A reproduction file is trusted because maintainers commit
it; a submitter's pull request that adds one is refused in review (docs/leaderboard.md).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from bench.studies.leaderboard.bundle import records_from_curves
from bench.studies.leaderboard.commits import CommitError, check_commit, git
from bench.studies.leaderboard.tracks import load_tracks
from bench.studies.leaderboard.validate import validate_file
from bench.studies.speedup import RunRecord, crossing, final_accuracy, load_runs
from core.io import atomic_write_json
from core.paths import REPO_ROOT
from core.provenance import cpu_model

REPRODUCTIONS_DIR = REPO_ROOT / "results" / "leaderboard" / "reproductions"
DEFAULT_TOLERANCE = {"final_accuracy": 0.03, "steps_relative": 0.25}  # a track's reproduce_tolerance overrides it

# Re-runs one stored config with the source tree it is started in: the schema merge refuses keys that commit
# does not know, as its own CLI would.
RERUN = """
import json, sys
from omegaconf import OmegaConf
from bench.config import TrainConfig
from bench.train import train
cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.create(json.loads(sys.argv[1])))
train(cfg)
"""


class ReproduceError(ValueError):
    """The bundle cannot be reproduced as asked: the message says why and what to do."""


def export_tree(commit: str, dest: Path, repo: Path = REPO_ROOT) -> Path:
    """The source tree of ``commit`` (``git archive``), extracted into ``dest``."""
    done = git(repo, "archive", "--format=tar", commit)
    if done.returncode != 0:
        raise ReproduceError(f"git archive {commit} failed: {done.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def pick_run(bundle: dict, method: str | None, seed: int | None) -> dict:
    """The run entry to re-run: ``method`` (default: the submitted entry, other than the reference, with the
    largest step speedup) and
    ``seed`` (default: its smallest)."""
    if method is None:
        submitted = [e for e in bundle["entries"] if e["role"] == "submitted"]
        submitted = [e for e in submitted if e["method"] != bundle["analysis"]["reference"]] or submitted
        if not submitted:
            raise ReproduceError("the bundle has no submitted entry to reproduce")
        method = max(submitted, key=lambda e: (e["metrics"]["speedup_steps"]["mean"] or 0.0))["method"]
    runs = [r for r in bundle["runs"] if r["method"] == method and (seed is None or r["seed"] == seed)]
    if not runs:
        have = sorted({(r["method"], r["seed"]) for r in bundle["runs"]})
        raise ReproduceError(f"no run of method={method!r}" + (f" seed={seed}" if seed is not None else "")
                             + f" in the bundle; it has {have}")
    return min(runs, key=lambda r: r["seed"])


def outcome(run: RunRecord, analysis: dict) -> dict:
    """Steps to the bundle's target and final accuracy of one run, as ``build_speedup_table`` reads them."""
    metric = analysis["metric"]
    return {"steps_to_target": crossing(run, metric, analysis["target"])[0],
            "final_accuracy": final_accuracy(run, metric, analysis["final_window"])}


def compare(claimed: dict, measured: dict, exact: bool, tolerance: dict) -> list[str]:
    """Every way the measured outcome misses the claimed one (empty: reproduced)."""
    misses = []
    a, b = claimed["steps_to_target"], measured["steps_to_target"]
    if (a is None) != (b is None):
        misses.append(f"steps to target: claimed {a}, measured {b}")
    elif a is not None and (a != b if exact else abs(a - b) > tolerance["steps_relative"] * max(a, 1)):
        misses.append(f"steps to target: claimed {a}, measured {b}"
                      + ("" if exact else f" (beyond {tolerance['steps_relative']:.0%})"))
    fa, fb = claimed["final_accuracy"], measured["final_accuracy"]
    if (fa is None) != (fb is None) or (fa is not None and abs(fa - fb) > (1e-9 if exact else
                                                                            tolerance["final_accuracy"])):
        misses.append(f"final accuracy: claimed {fa}, measured {fb}"
                      + ("" if exact else f" (beyond ±{tolerance['final_accuracy']})"))
    return misses


def same_world(bundle: dict, run: dict, rerun_config: dict) -> str | None:
    """"identical" / "different": the re-run's world models against the bundle's ``models``; None when they
    cannot be compared (the bundle's models describe another run's world, or carry no digest)."""
    from bench.studies.leaderboard.bundle import world_models

    first = min(bundle["runs"], key=lambda r: (r["method"], r["seed"]))
    strip = lambda world: {k: v for k, v in world.items() if k != "cache_dir"}  # noqa: E731
    if strip(first["config"]["world"]) != strip(run["config"]["world"]):
        return None
    claimed = {role: m.get("sha256") for role, m in bundle["models"].items()}
    if not all(claimed.values()):
        return None
    measured = {role: m.get("sha256") for role, m in world_models(rerun_config).items()}
    return "identical" if measured == claimed else "different"


def rerun_config(config: dict, work: Path, cache_dir: Path | None) -> dict:
    """The stored config with only the output folder, the world cache and the logging changed."""
    cfg = json.loads(json.dumps(config))
    cfg["trainer"]["output_dir"] = str(work / "run")
    cfg["trainer"]["resume"] = "none"
    cfg["world"]["cache_dir"] = str(cache_dir or os.environ.get("EFFOPD_CACHE_DIR")
                                    or REPO_ROOT / ".cache" / "effopd-bench")
    cfg["logging"] = {**cfg.get("logging", {}), "wandb": "disabled", "progress_bar": False}
    return cfg


def rerun(config: dict, source: Path, work: Path, cache_dir: Path | None, timeout_s: int) -> Path:
    """Train ``config`` with the code in ``source``; returns the run folder."""
    cfg = rerun_config(config, work, cache_dir)
    out = Path(cfg["trainer"]["output_dir"])
    env = {**os.environ, "PYTHONPATH": str(source), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", RERUN, json.dumps(cfg)], cwd=source, env=env,
                          capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise ReproduceError(f"the re-run failed (exit {done.returncode}): {done.stderr.strip()[-1500:]}")
    return out


def reproduce(bundle_path: str | Path, *, method: str | None = None, seed: int | None = None,
              source: Path | None = None, cache_dir: Path | None = None, out_dir: Path = REPRODUCTIONS_DIR,
              repo: Path = REPO_ROOT, tracks: dict | None = None, timeout_s: int = 3600) -> dict:
    """Re-run one run of the bundle and write the verdict; returns the reproduction record. ``source``: run this
    checkout instead of ``git archive`` of the bundle's commit (tests; the commit is still checked)."""
    bundle_path = Path(bundle_path)
    problems = validate_file(bundle_path, submissions_dir=bundle_path.parent, tracks=tracks)
    if problems:
        raise ReproduceError(f"{bundle_path.name} does not validate: " + "; ".join(problems))
    bundle = json.loads(bundle_path.read_text())
    commit = bundle["provenance"]["git"]["commit"]
    try:
        check_commit(commit, repo)
    except CommitError as err:
        raise ReproduceError(str(err)) from None
    tracks = tracks if tracks is not None else load_tracks()
    spec = tracks[bundle["track"]]
    tolerance = {**DEFAULT_TOLERANCE, **(spec.get("reproduce_tolerance") or {})}
    analysis = bundle["analysis"]
    run = pick_run(bundle, method, seed)
    curve = next(c for c in bundle["curves"] if c["method"] == run["method"] and c["seed"] == run["seed"])
    claimed = outcome(records_from_curves([curve], analysis["metric"])[0], analysis)
    import torch

    prov = bundle["provenance"]
    with tempfile.TemporaryDirectory(prefix="effopd-reproduce-") as tmp:
        tree = source or export_tree(commit, Path(tmp) / "src", repo)
        folder = rerun(run["config"], tree, Path(tmp), cache_dir, timeout_s)
        measured = outcome(load_runs(folder)[0], analysis)
        world = same_world(bundle, run, rerun_config(run["config"], Path(tmp), cache_dir))
    exact = (world != "different" and bundle["track"] == "tiny-cpu" and prov["packages"].get("torch") ==
             torch.__version__ and prov["hardware"]["cpu_model"] == cpu_model())
    if world == "different":
        mode, verdict = "different-world", "different-world"
        misses = ["this machine trained in another world than the bundle's (its student and teacher weights "
                  "differ), so one run is another draw, not a reproduction: compare the study's verdict and "
                  "interval over world builds instead"]
    else:
        misses = compare(claimed, measured, exact, tolerance)
        mode, verdict = ("exact" if exact else "tolerance"), ("failed" if misses else "reproduced")
    record = {
        "bundle_id": bundle["id"], "bundle_digest": bundle["digest"], "commit": commit,
        "method": run["method"], "seed": run["seed"], "metric": analysis["metric"], "target": analysis["target"],
        "claimed": claimed, "measured": measured, "world": world or "not comparable",
        "mode": mode, "tolerance": None if exact else tolerance,
        "verdict": verdict, "misses": misses,
        "machine": {"cpu_model": cpu_model(), "torch": torch.__version__},
        "source": "git archive of the commit" if source is None else f"checkout {source}",
        "reproduced_at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    atomic_write_json(Path(out_dir) / f"{bundle['id']}.json", record)
    return record


def status_of(bundle: dict, reproductions_dir: Path = REPRODUCTIONS_DIR) -> str:
    """``reproduced`` when a reproduction of exactly this bundle (its digest) succeeded, else ``self-reported``."""
    path = Path(reproductions_dir) / f"{bundle['id']}.json"
    if not path.is_file():
        return "self-reported"
    try:
        record = json.loads(path.read_text())
    except ValueError:
        return "self-reported"
    ok = record.get("bundle_digest") == bundle["digest"] and record.get("verdict") == "reproduced"
    return "reproduced" if ok else "self-reported"
