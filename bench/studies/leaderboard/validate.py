"""Validate leaderboard submissions: ``python -m bench.leaderboard validate [file ...]``.

A bundle is rejected, with one line per reason that names the field and the fix, for:

- schema: it does not match bench/studies/leaderboard/schema.json (the same schema the writer fills in);
- hash: its digest, the curves / runs hashes, an entry's curves hash, or the sidecar's sha256 do not match
  (edited curves or samples); with --check-files also the listed run files, where they exist locally;
- recompute: a headline number (final accuracy, steps / wall seconds / tokens to target, speedups, CIs,
  validation overhead) that bench.studies.speedup.build_speedup_table does not reproduce from the included
  curves;
- protocol: below its track's minimum (experiments/leaderboard/tracks.yaml): seeds, eval problems, samples
  per problem, max new tokens, metric / reference / target, world kind, dirty checkout;
- duplicate: the same id, digest or submitted curves as another submission in the folder;
- provenance: missing or placeholder commit, package versions, hardware, model or dataset identity.

Only JSON is read (json.loads, NaN/Infinity refused; the sidecar is gunzipped JSON lines); nothing from a
submission is imported, unpickled or executed.
"""

from __future__ import annotations

import json
import math
import subprocess
import zlib
from functools import lru_cache
from pathlib import Path

from bench.studies.leaderboard.bundle import (
    HEADLINE,
    SCHEMA_PATH,
    SUBMISSIONS_DIR,
    bundle_digest,
    canonical,
    compute_entries,
    curves_of,
    sha256_bytes,
    sha256_file,
)
from bench.studies.leaderboard.commits import CommitError, check_commit, is_full_clone
from bench.studies.leaderboard.tracks import load_tracks
from core.paths import REPO_ROOT

MAX_BYTES = 32 << 20  # a bundle is curves and configs: tens of KB to a few MB
MAX_SIDECAR_BYTES = 512 << 20  # decompressed
REL_TOL, ABS_TOL = 1e-6, 1e-9


@lru_cache(maxsize=1)
def _schema_validator():
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _no_nan(token: str):
    raise ValueError(f"{token} is not allowed in a submission (use null)")


def load_json(path: Path) -> dict:
    if path.stat().st_size > MAX_BYTES:
        raise ValueError(f"{path.name}: {path.stat().st_size} bytes, over the {MAX_BYTES} byte limit")
    obj = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_nan)
    if not isinstance(obj, dict):
        raise ValueError(f"{path.name}: top level must be a JSON object")
    return obj


def schema_errors(bundle: dict) -> list[str]:
    out = []
    for err in sorted(_schema_validator().iter_errors(bundle), key=lambda e: list(map(str, e.absolute_path))):
        where = "/".join(map(str, err.absolute_path)) or "(top level)"
        out.append(f"schema: {where}: {err.message} "
                   "(see bench/studies/leaderboard/schema.json; rewrite with bench.submit)")
    return out


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=ABS_TOL)


def _stat_diff(field: str, got: dict, want: dict) -> str | None:
    if got["n"] != want["n"] or not _close(got["mean"], want["mean"]):
        return f"{field}: says mean {got['mean']} (n={got['n']}), the curves give {want['mean']} (n={want['n']})"
    g, w = got.get("ci95"), want.get("ci95")
    if (g is None) != (w is None) or (g and not all(_close(x, y) for x, y in zip(g, w))):
        return f"{field}: says ci95 {g}, the curves give {w}"
    return None


def hash_problems(bundle: dict, sidecar_bytes: bytes | None, folder: Path | None) -> list[str]:
    out = []
    if bundle_digest(bundle) != bundle["digest"]:
        out.append("hash: digest does not match the bundle's content (it was edited after bench.submit wrote it); "
                   "resubmit with python -m bench.submit")
    if sha256_bytes(canonical(bundle["curves"])) != bundle["hashes"]["curves_sha256"]:
        out.append("hash: hashes.curves_sha256 does not match curves (tampered curves)")
    if sha256_bytes(canonical(bundle["runs"])) != bundle["hashes"]["runs_sha256"]:
        out.append("hash: hashes.runs_sha256 does not match runs (edited configs or file hashes)")
    for e in bundle["entries"]:
        mine = sorted(curves_of(bundle["curves"], e["method"]), key=lambda c: c["seed"])
        if sha256_bytes(canonical(mine)) != e["curves_sha256"]:
            out.append(f"hash: entries[{e['method']}].curves_sha256 does not match its curves (tampered curves)")
    for r in bundle["runs"]:
        if sha256_bytes(canonical(r["config"])) != r["config_sha256"]:
            out.append(f"hash: runs[{r['path']}].config_sha256 does not match its config")
    side = bundle.get("sidecar")
    if bundle.get("evals") and not side:
        out.append("hash: evals are attached but there is no sidecar with their samples; resubmit without --no-sidecar")
    if side:
        if sidecar_bytes is None:
            path = (folder or SUBMISSIONS_DIR) / side["path"]
            if not path.exists():
                return out + [f"hash: sidecar {side['path']} is missing; commit it next to the bundle or "
                              "resubmit with --no-sidecar"]
            sidecar_bytes = path.read_bytes()
        if sha256_bytes(sidecar_bytes) != side["sha256"]:
            return out + [f"hash: sidecar {side['path']} sha256 does not match sidecar.sha256 (tampered samples)"]
        out += sidecar_problems(bundle, sidecar_bytes)
    return out


def _gunzip(blob: bytes, limit: int = MAX_SIDECAR_BYTES) -> bytes:
    """gzip.decompress with a cap on the output, so a crafted sidecar cannot exhaust memory."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(blob, limit + 1)
    if len(out) > limit or d.unconsumed_tail:
        raise ValueError(f"sidecar decompresses to more than {limit} bytes")
    return out


def sidecar_problems(bundle: dict, blob: bytes) -> list[str]:
    """The sidecar's raw evals records must say what the curves say."""
    try:
        lines = _gunzip(blob).decode().splitlines()
        records = [json.loads(line, parse_constant=_no_nan) for line in lines if line.strip()]
    except (OSError, ValueError, zlib.error, RecursionError) as exc:
        return [f"hash: sidecar is not gzip JSON lines: {exc}"]
    if len(records) != bundle["sidecar"]["records"]:
        return [f"hash: sidecar holds {len(records)} records, sidecar.records says {bundle['sidecar']['records']}"]
    out = eval_sample_problems(bundle, [r for r in records if r.get("stream") == "samples"])
    metric = bundle["analysis"]["metric"]
    raw: dict[tuple[str, int], list] = {}
    for r in records:
        if r.get("stream") == "evals":
            rec = r["record"]
            point = [rec["step"], rec.get("train_seconds"), rec.get(metric)]
            raw.setdefault((r["method"], r["seed"]), []).append(point)
    for c in bundle["curves"]:
        got = [[s, t, v] for s, t, v, _ in c["evals"]]
        want = sorted(raw.get((c["method"], c["seed"]), []), key=lambda x: x[0])
        if got != want:
            out.append(f"hash: curves[{c['method']} seed {c['seed']}] differ from the sidecar's evals records")
    return out


def eval_sample_problems(bundle: dict, records: list[dict]) -> list[str]:
    """Attached benchmark evals: the sidecar's samples must hash to what the bundle says, and evals.metrics.summarize
    must give the bundle's avg@k / pass@k / maj@k from them."""
    from evals.metrics import summarize

    out = []
    for i, ev in enumerate(bundle.get("evals") or []):
        recs = [r["record"] for r in records if r.get("eval") == i]
        if sha256_bytes(canonical(recs)) != ev["samples"]["sha256"] or len(recs) != ev["samples"]["count"]:
            out.append(f"hash: evals[{i}] ({ev['benchmark']}) samples in the sidecar do not match "
                       f"evals[{i}].samples.sha256 (tampered samples)")
            continue
        try:
            want = summarize(recs, k=int(ev["metrics"]["k"]),
                             exclude_flagged=ev["metrics"].get("flagged_excluded", True))
        except (ValueError, KeyError, TypeError) as exc:
            out.append(f"recompute: evals[{i}] samples cannot be summarised: {exc}")
            continue
        for key, val in want.items():
            if key.startswith(("avg@", "pass@", "maj@")) or key in ("n_problems", "n_samples"):
                if not _close(ev["metrics"].get(key), val):
                    out.append(f"recompute: evals[{i}].metrics.{key} says {ev['metrics'].get(key)}, "
                               f"its samples give {val}")
    return out


def recompute_problems(bundle: dict) -> list[str]:
    roles = {e["method"]: e["role"] for e in bundle["entries"]}
    try:
        entries, target = compute_entries(bundle["curves"], bundle["analysis"], roles)
    except ValueError as exc:
        return [f"recompute: the curves cannot be tabulated: {exc}"]
    out = []
    if not _close(target, bundle["analysis"]["target"]):
        out.append(f"recompute: analysis.target says {bundle['analysis']['target']}, the curves give {target}")
    want = {e["method"]: e for e in entries}
    got = {e["method"]: e for e in bundle["entries"]}
    if set(want) != set(got):
        out.append(f"recompute: entries are {sorted(got)} but the curves hold methods {sorted(want)}")
    for m in sorted(set(want) & set(got)):
        g, w = got[m], want[m]
        for k in ("seeds", "reached_target"):
            if g[k] != w[k]:
                out.append(f"recompute: entries[{m}].{k} says {g[k]}, the curves give {w[k]}")
        if not all(_close(a, b) for a, b in zip(g["lr"], w["lr"])) or len(g["lr"]) != len(w["lr"]):
            out.append(f"recompute: entries[{m}].lr says {g['lr']}, the curves give {w['lr']}")
        for k in HEADLINE:
            d = _stat_diff(f"entries[{m}].metrics.{k}", g["metrics"][k], w["metrics"][k])
            if d:
                out.append("recompute: " + d)
        for k in w["effopd_overhead"]:
            d = _stat_diff(f"entries[{m}].effopd_overhead.{k}", g["effopd_overhead"][k], w["effopd_overhead"][k])
            if d:
                out.append("recompute: " + d)
    return out


def protocol_problems(bundle: dict, tracks: dict) -> list[str]:
    name = bundle["track"]
    if name not in tracks:
        return [f"protocol: track {name!r} is not in experiments/leaderboard/tracks.yaml ({sorted(tracks)})"]
    spec, out = tracks[name], []
    a, p = bundle["analysis"], bundle["eval_protocol"]
    for key in ("metric", "reference", "final_window"):
        if a[key] != spec[key]:
            out.append(f"protocol: analysis.{key} is {a[key]!r}; track {name} requires {spec[key]!r}")
    if not _close(a["target_fraction"], spec["target_fraction"]):
        out.append(f"protocol: analysis.target_fraction is {a['target_fraction']}; track {name} requires "
                   f"{spec['target_fraction']}")
    if p["metric"] != a["metric"]:
        out.append(f"protocol: eval_protocol.metric {p['metric']!r} differs from analysis.metric {a['metric']!r}")
    for e in bundle["entries"]:
        if len(e["seeds"]) < spec["min_seeds"]:
            out.append(f"protocol: entries[{e['method']}] has {len(e['seeds'])} seeds; track {name} requires at least "
                       f"{spec['min_seeds']} (train more seeds)")
    for key, field in (("min_eval_problems", "num_problems"), ("min_samples_per_problem", "n"),
                       ("min_max_new_tokens", "max_new_tokens")):
        if p[field] < spec[key]:
            out.append(f"protocol: eval_protocol.{field} is {p[field]}; track {name} requires at least {spec[key]}")
    for i, ev in enumerate(bundle.get("evals") or []):
        for key, field in (("min_samples_per_problem", "n"), ("min_max_new_tokens", "max_new_tokens")):
            if ev[field] < spec[key]:
                out.append(f"protocol: evals[{i}].{field} is {ev[field]}; track {name} requires at least {spec[key]}")
    if bundle["provenance"]["git"]["dirty"] and not spec["allow_dirty"]:
        out.append(f"protocol: provenance.git.dirty is true; track {name} needs runs from a clean checkout "
                   "(commit, then rerun)")
    # What the protocol says must be what the runs were configured with.
    for r in bundle["runs"]:
        cfg = r["config"]
        try:
            kind, tests = cfg["world"]["kind"], int(cfg["data"]["test_prompts"])
            max_new = int(cfg["rollout"]["max_new_tokens"])
            if kind != "tiny" and (tests == 0 or tests > p["num_problems"]):
                tests = p["num_problems"]  # hub: test_prompts caps the benchmark (0 = all of its rows)
        except (KeyError, TypeError, ValueError):
            out.append(f"protocol: runs[{r['path']}].config lacks world.kind / data.test_prompts / "
                       "rollout.max_new_tokens")
            continue
        if kind != spec["world_kind"]:
            out.append(f"protocol: runs[{r['path']}] is world.kind={kind}; track {name} requires {spec['world_kind']}")
        if tests != p["num_problems"] or max_new != p["max_new_tokens"]:
            out.append(f"protocol: runs[{r['path']}] ran data.test_prompts={tests}, rollout.max_new_tokens={max_new}"
                       f"; eval_protocol says {p['num_problems']}, {p['max_new_tokens']}")
    have = {(r["method"], r["seed"]) for r in bundle["runs"]}
    for c in bundle["curves"]:
        if (c["method"], c["seed"]) not in have:
            out.append(f"provenance: curves[{c['method']} seed {c['seed']}] has no runs[] entry (config and files)")
    return out


def commit_problems(commit: str, repo: Path = REPO_ROOT) -> list[str]:
    """The bundle's commit must be in this repository's history (a made-up one cannot be reproduced). Not
    decidable, so not checked, outside a full git clone (a source tarball, a shallow CI checkout)."""
    try:
        if not is_full_clone(repo):
            return []
        check_commit(commit, repo)
    except (OSError, subprocess.SubprocessError):
        return []  # no git here
    except CommitError as err:
        return [f"provenance: provenance.git.{err}"]
    return []


def provenance_problems(bundle: dict) -> list[str]:
    out, prov = [], bundle["provenance"]
    if set(prov["git"]["commit"]) == {"0"}:
        out.append("provenance: provenance.git.commit is a placeholder; give the commit the runs were made at")
    else:
        out += commit_problems(prov["git"]["commit"])
    for pkg in ("torch", "transformers", "effopd-bench"):
        if not prov["packages"].get(pkg):
            out.append(f"provenance: provenance.packages.{pkg} is missing")
    if prov["hardware"]["cpu_model"].strip().lower() in ("unknown", "n/a", "none"):
        out.append("provenance: provenance.hardware.cpu_model is unknown; name the CPU (and GPU) the runs used")
    if prov["hardware"]["gpu_count"] > 0 and not prov["hardware"]["gpu_model"]:
        out.append("provenance: provenance.hardware.gpu_model is missing while gpu_count > 0")
    for role, m in bundle["models"].items():
        if m["kind"] == "hub" and not (m.get("revision") and m["revision"] not in ("main", "")):
            out.append(f"provenance: models.{role} is hub id {m['id']!r} without a pinned revision (commit sha); "
                       f"set models.{role}.revision or give local weights (sha256)")
        if m["kind"] in ("tiny", "local") and not m.get("sha256"):
            out.append(f"provenance: models.{role}.sha256 is missing (weights of {m['id']!r} were not hashed; "
                       "submit where the model folder exists)")
    roles = {d["role"] for d in bundle["datasets"]}
    for role in ("train", "test"):
        if role not in roles:
            out.append(f"provenance: datasets lacks a {role!r} entry (id + sha256)")
    for r in bundle["runs"]:
        if r["final_model"] is None:
            out.append(f"provenance: runs[{r['path']}].final_model is missing: the run saved no final_model/ "
                       "(trainer.save_final_model=true)")
    return out


def duplicate_problems(bundle: dict, folder: Path, self_path: Path | None) -> list[str]:
    out = []
    mine = {e["curves_sha256"]: e["method"] for e in bundle["entries"] if e["role"] == "submitted"}
    for other_path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if self_path is not None and other_path.resolve() == self_path.resolve():
            continue
        try:
            other = load_json(other_path)
        except (OSError, ValueError):
            continue  # reported when that file itself is validated
        if other.get("id") == bundle["id"]:
            out.append(f"duplicate: id {bundle['id']!r} is already taken by {other_path.name}")
        elif other.get("digest") == bundle["digest"]:
            out.append(f"duplicate: identical to {other_path.name}")
        for e in other.get("entries") or []:
            if isinstance(e, dict) and e.get("role") == "submitted" and e.get("curves_sha256") in mine:
                out.append(f"duplicate: entry {mine[e['curves_sha256']]!r} has the same curves as "
                           f"{other_path.name} entry {e.get('method')!r} (mark it role=reference: "
                           "bench.submit --reference-runs)")
    return out


def file_problems(bundle: dict, root: Path = REPO_ROOT) -> tuple[list[str], int]:
    """Listed run files that exist under `root` must match their sha256. Returns (problems, files checked)."""
    out, checked = [], 0
    for r in bundle["runs"]:
        folder = root / r["path"]
        for f in r["files"]:
            path = folder / f["path"]
            if not path.is_file():
                continue
            checked += 1
            if sha256_file(path) != f["sha256"]:
                out.append(f"hash: {r['path']}/{f['path']} does not match its sha256 in the bundle")
    return out, checked


def validate_bundle(bundle: dict, *, sidecar_bytes: bytes | None = None, folder: Path | None = None,
                    submissions_dir: Path | None = None, self_path: Path | None = None,
                    check_files: bool = False, tracks: dict | None = None) -> list[str]:
    """Every reason to reject `bundle` (empty when it is accepted)."""
    problems = schema_errors(bundle)
    if problems:
        return problems  # the other checks need the structure the schema guarantees
    problems += hash_problems(bundle, sidecar_bytes, folder)
    problems += recompute_problems(bundle)
    problems += protocol_problems(bundle, tracks if tracks is not None else load_tracks())
    problems += provenance_problems(bundle)
    problems += duplicate_problems(bundle, submissions_dir or SUBMISSIONS_DIR, self_path)
    if check_files:
        found, checked = file_problems(bundle)
        listed = sum(len(r["files"]) for r in bundle["runs"])
        problems += found if checked else [f"check-files: none of the {listed} run files the bundle lists is here, so "
                                           "nothing was checked; run it where the run folders are"]
    return problems


def validate_file(path: str | Path, *, submissions_dir: Path | None = None, check_files: bool = False,
                  tracks: dict | None = None) -> list[str]:
    path = Path(path)
    try:
        bundle = load_json(path)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        return [f"json: {path.name} is not a readable JSON object: {exc}"]
    return validate_bundle(bundle, folder=path.parent, submissions_dir=submissions_dir or path.parent,
                           self_path=path, check_files=check_files, tracks=tracks)


def submission_files(folder: Path = SUBMISSIONS_DIR) -> list[Path]:
    return sorted(folder.glob("*.json")) if folder.is_dir() else []
