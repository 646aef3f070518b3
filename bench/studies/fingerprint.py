"""Run fingerprints: which code and which config made a run folder, so a study never reuses a stale one silently.

When a launcher starts a job it writes ``<run_dir>/fingerprint.json``:

- ``config_sha256``: sha256 of the job's composed Hydra config (the job's overrides plus the launchers' fixed
  ``LAUNCH_OVERRIDES``, composed like ``python -m bench.train`` does, interpolations left unresolved), with the
  flat config itself so that a mismatch can name the keys that differ;
- ``code_sha256``: sha256 over the source that decides a run's outputs: every module of core/, evals/ and
  bench/ except bench/studies/ (each hashed as its AST with docstrings stripped, so comments, docstrings and
  formatting do not count), and the YAML under experiments/ that ``bench.train`` composes (parsed, so YAML
  comments do not count; experiments/sweeps/ and experiments/leaderboard/ are read by studies only), with the
  per-file hashes so that a mismatch can name the files.

A finished folder whose fingerprint is missing or differs from the job's is *stale*; bench/studies/launcher.py
refuses it by default (``--stale rerun`` moves it aside and trains again, ``--stale reuse`` uses it anyway).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from pathlib import Path

import yaml

from bench.studies.jobs import LAUNCH_OVERRIDES, Job
from core.io import atomic_write_json
from core.paths import REPO_ROOT

FILENAME = "fingerprint.json"
VERSION = 1
CODE_DIRS = ("core", "evals", "bench")
EXCLUDED = ("bench/studies/", "experiments/sweeps/", "experiments/leaderboard/")


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:]
    return tree


def module_hash(source: str) -> str:
    """sha256 of a module's AST without docstrings (no line numbers): comment and docstring edits keep it."""
    return _sha(ast.dump(_strip_docstrings(ast.parse(source)), include_attributes=False))


def yaml_hash(text: str) -> str:
    """sha256 of a YAML file's parsed content: comments and layout do not count."""
    return _sha(json.dumps(yaml.safe_load(text), sort_keys=True, default=str))


def code_files(root: Path = REPO_ROOT) -> list[Path]:
    """The files whose content decides a run's outputs (see the module docstring), sorted."""
    root = Path(root)
    files = [p for d in CODE_DIRS for p in (root / d).rglob("*.py")]
    files += list((root / "experiments").rglob("*.yaml"))
    return sorted(p for p in files if not any(p.relative_to(root).as_posix().startswith(e) for e in EXCLUDED)
                  and "__pycache__" not in p.parts)


@functools.lru_cache(maxsize=8)
def code_fingerprint(root: Path = REPO_ROOT) -> dict:
    """{"code_sha256": combined hash, "code_files": {relative path: hash}} of ``code_files(root)``.

    Computed once per process and root (a study's runs all see the same checkout)."""
    root = Path(root)
    per_file = {}
    for path in code_files(root):
        text = path.read_text()
        per_file[path.relative_to(root).as_posix()] = yaml_hash(text) if path.suffix == ".yaml" else module_hash(text)
    return {"code_sha256": _sha(json.dumps(per_file, sort_keys=True)), "code_files": per_file}


def _flatten(d, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


@functools.lru_cache(maxsize=4096)
def _composed(overrides: tuple[str, ...]) -> str:
    from omegaconf import OmegaConf

    from bench.config import compose_config

    cfg = OmegaConf.to_container(compose_config(list(overrides)), resolve=False)
    cfg.pop("hydra", None)
    return json.dumps(_flatten(cfg), sort_keys=True, default=str)


def config_fingerprint(overrides: list[str]) -> dict:
    """{"config_sha256", "config": flat {dotted key: value}} of the config ``python -m bench.train`` composes for
    ``overrides`` plus the launchers' fixed overrides."""
    flat = _composed(tuple(overrides) + LAUNCH_OVERRIDES)
    return {"config_sha256": _sha(flat), "config": json.loads(flat)}


def expected(job: Job) -> dict:
    """The fingerprint a run of ``job`` made by this checkout has."""
    code = code_fingerprint()
    cfg = config_fingerprint(job.overrides)
    return {"version": VERSION, "config_sha256": cfg["config_sha256"], "code_sha256": code["code_sha256"],
            "overrides": list(job.overrides), "launch_overrides": list(LAUNCH_OVERRIDES), "config": cfg["config"],
            "code_files": code["code_files"]}


def short(fp: dict) -> str:
    """Eight hex digits naming a fingerprint (config and code together)."""
    return _sha(fp.get("config_sha256", "") + fp.get("code_sha256", ""))[:8]


def write(job: Job) -> dict:
    fp = expected(job)
    job.run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(job.run_dir / FILENAME, fp)
    return fp


def read(run_dir: Path) -> dict | None:
    path = Path(run_dir) / FILENAME
    return json.loads(path.read_text()) if path.exists() else None


def _listing(items: list[str], limit: int = 6) -> str:
    return ", ".join(items[:limit]) + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def difference(recorded: dict | None, want: dict) -> str | None:
    """None when ``recorded`` matches ``want``; else what differs, in words (config keys, code files)."""
    if recorded is None:
        return f"no {FILENAME} (made before run fingerprints, or not by a study)"
    parts = []
    if recorded.get("config_sha256") != want["config_sha256"]:
        old, new = recorded.get("config") or {}, want["config"]
        keys = sorted(k for k in set(old) | set(new) if old.get(k, "<absent>") != new.get(k, "<absent>"))
        parts.append("config differs: " + (_listing([f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}"
                                                      for k in keys]) or "(no key list recorded)"))
    if recorded.get("code_sha256") != want["code_sha256"]:
        old, new = recorded.get("code_files") or {}, want["code_files"]
        files = sorted(f for f in set(old) | set(new) if old.get(f) != new.get(f))
        parts.append("code differs: " + (_listing(files) or "(no file list recorded)"))
    return "; ".join(parts) or None


def stale_reason(job: Job) -> str | None:
    """Why the finished folder of ``job`` was not made by this code and config, or None when it was."""
    return difference(read(job.run_dir), expected(job))
