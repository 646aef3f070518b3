"""Build a leaderboard submission bundle from finished runs (``python -m bench.submit``).

    python -m bench.submit runs/table2 --name "effopd-bench" --contact you@example.org
    python -m bench.submit results/table2.json --name ... --contact ...     # its rows, from runs/table2
    python -m bench.submit runs/mine --name ... --contact ... --reference-runs runs/table2/OPD

The bundle (results/leaderboard/submissions/<id>.json) holds everything needed to check its headline numbers
without the run folders: provenance, protocol, and per seed the eval curve (step, train seconds, metric,
cumulative tokens) from which `bench.studies.speedup.build_speedup_table` recomputes final accuracy, steps to
target, speedups and CIs. Run files it was built from are listed with sha256; their raw records go into a gzip
sidecar (<id>.records.jsonl.gz) whose sha256 the bundle pins. JSON only: nothing in a bundle is executed.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import json
import os
import platform
import re
from pathlib import Path

import yaml

from bench.studies.leaderboard.tracks import load_tracks
from bench.studies.speedup import RunRecord, build_speedup_table, load_runs
from core.io import atomic_write_json, read_jsonl
from core.paths import REPO_ROOT
from core.provenance import cpu_model, git_state, sha256_file
from core.provenance import package_versions as _versions

SCHEMA_VERSION = "1.0"
SCHEMA_PATH = Path(__file__).with_name("schema.json")
SUBMISSIONS_DIR = REPO_ROOT / "results" / "leaderboard" / "submissions"
HEADLINE = ("final_accuracy", "steps_to_target", "wall_seconds_to_target", "tokens_to_target", "speedup_steps",
            "speedup_wall", "validation_overhead_seconds")
RUN_FILES = ("config.yaml", "summary.json", "evals.jsonl", "metrics.jsonl", "effopd.jsonl",
             "final_model/model.safetensors", "final_model/config.json")
STREAMS = ("metrics", "evals", "effopd")
TINY_PROMPT_TEMPLATE = "{a}+{b}="  # bench.world.tiny: the prompt is the bare sum, the answer ends in \boxed{}
PACKAGES = ("effopd-bench", "torch", "transformers", "tokenizers", "numpy", "hydra-core", "math-verify")


class SubmitError(ValueError):
    """A run or table that cannot be packaged; the message names the problem and the fix."""


# ------------------------------------------------------------------------------------------------ hashing

def canonical(obj) -> bytes:
    """The byte form every bundle hash is taken over: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(path: Path, rel_to: Path) -> dict:
    return {"path": os.path.relpath(path, rel_to), "sha256": sha256_file(path), "bytes": path.stat().st_size}


def curves_of(curves: list[dict], method: str) -> list[dict]:
    return [c for c in curves if c["method"] == method]


def bundle_digest(bundle: dict) -> str:
    return sha256_bytes(canonical({k: v for k, v in bundle.items() if k != "digest"}))


# ------------------------------------------------------------------------------- curves <-> RunRecords

def curve_of(run: RunRecord, metric: str) -> dict:
    """One seed's curve: what build_speedup_table reads from a run, and nothing else."""
    tokens = run.tokens_by_step
    return {
        "method": run.method, "seed": run.seed, "lr": run.lr,
        "train_seconds": float(run.summary.get("train_seconds", 0.0)),
        "validation_seconds": float(run.summary.get("validation_seconds", 0.0)),
        "validation_tokens": int(run.summary.get("validation_tokens", 0)),
        "evals": [[int(e["step"]), e.get("train_seconds"), e.get(metric), tokens.get(int(e["step"]))]
                  for e in run.evals],
    }


def records_from_curves(curves: list[dict], metric: str) -> list[RunRecord]:
    """Inverse of `curve_of`: RunRecords that build_speedup_table treats exactly like the original runs."""
    out = []
    for c in curves:
        evals = [{"step": s, "train_seconds": t, metric: v} for s, t, v, _ in c["evals"]]
        tokens = {s: tok for s, _, _, tok in c["evals"] if tok is not None}
        out.append(RunRecord(method=c["method"], seed=int(c["seed"]), lr=float(c["lr"]), world="",
                             summary={"validation_seconds": c["validation_seconds"]}, evals=evals,
                             tokens_by_step=tokens))
    return out


def compute_entries(curves: list[dict], analysis: dict, roles: dict[str, str]) -> tuple[list[dict], float]:
    """The headline numbers of every method, recomputed from the curves with bench.studies.speedup."""
    from bench.studies.stats import mean_ci

    table = build_speedup_table(records_from_curves(curves, analysis["metric"]), reference=analysis["reference"],
                                target_fraction=analysis["target_fraction"], metric=analysis["metric"],
                                final_window=analysis["final_window"], ci_method=analysis["ci_method"])
    entries = []
    for row in table["rows"]:
        mine = curves_of(curves, row["method"])
        entries.append({
            "method": row["method"], "role": roles.get(row["method"], "submitted"), "seeds": row["seeds"],
            "lr": row["lr"], "reached_target": row["reached_target"],
            "metrics": {k: row[k] for k in HEADLINE},
            "effopd_overhead": {
                "validation_seconds": mean_ci([c["validation_seconds"] for c in mine], method=analysis["ci_method"]),
                "validation_tokens": mean_ci([c["validation_tokens"] for c in mine], method=analysis["ci_method"]),
                "fraction_of_train_seconds": mean_ci(
                    [c["validation_seconds"] / c["train_seconds"] for c in mine if c["train_seconds"] > 0],
                    method=analysis["ci_method"]),
            },
            "curves_sha256": sha256_bytes(canonical(sorted(mine, key=lambda c: c["seed"]))),
        })
    return entries, table["target"]["value"]


# ------------------------------------------------------------------------------------------- provenance

def package_versions() -> dict:
    return {"python": platform.python_version(), **_versions(PACKAGES)}


def this_machine(parallel_runs: int | None) -> dict:
    gpu_model, gpu_count = None, 0
    try:
        import torch

        if torch.cuda.is_available():
            gpu_count = torch.cuda.device_count()
            gpu_model = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - no torch / no driver: no GPU
        pass
    return {"cpu_model": cpu_model(), "cpu_count": os.cpu_count() or 1, "gpu_model": gpu_model,
            "gpu_count": gpu_count, "platform": platform.platform(), "parallel_runs": parallel_runs,
            "source": "submit host (the runs' own machine was not recorded)"}


def model_identity(kind: str, path_or_id: str, revision: str | None = None) -> dict:
    """A tiny-world or local model: sha256 of its weights; a hub model: its id and revision."""
    folder = Path(path_or_id).expanduser()
    if not folder.is_absolute():
        folder = REPO_ROOT / folder
    if folder.is_dir():
        files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".json") and p.is_file())
        entries = [file_entry(p, folder) for p in files]
        weights = [e for e in entries if e["path"].endswith((".safetensors", ".bin"))]
        digest = sha256_bytes(canonical([[e["path"], e["sha256"]] for e in weights])) if weights else None
        return {"kind": kind, "id": os.path.relpath(folder, REPO_ROOT) if folder.is_relative_to(REPO_ROOT)
                else str(folder), "revision": revision, "sha256": digest, "files": entries}
    return {"kind": "hub" if kind != "tiny" else kind, "id": path_or_id, "revision": revision, "sha256": None,
            "files": []}


def world_models(cfg: dict, revisions: dict[str, str] | None = None) -> dict:
    world = cfg["world"]
    if world["kind"] == "tiny":
        from omegaconf import OmegaConf

        from bench.world.tiny.build import model_key

        w = OmegaConf.create(world)
        cache = Path(os.path.expandvars(world["cache_dir"]))
        return {role: model_identity("tiny", str(cache / model_key(w, role))) for role in ("student", "teacher")}
    revisions = revisions or {}
    return {role: model_identity("local" if Path(world[f"{role}_path"]).exists() else "hub", world[f"{role}_path"],
                                 revisions.get(role)) for role in ("student", "teacher")}


def datasets_of(cfg: dict) -> list[dict]:
    world, data = cfg["world"], cfg["data"]
    if world["kind"] == "tiny":
        spec = {"digits": world["digits"], "criterion": world["criterion"], "name": world["name"],
                "train_prompts": data["train_prompts"], "test_prompts": data["test_prompts"],
                "shuffle_seed": data["shuffle_seed"]}
        how = ("generated by evals.datasets.tinyworld_task from the seeded recipe; sha256 of the canonical recipe JSON "
               "(operand-pair hash splits)")
        return [{"role": role, "id": f"tinyworld/{world['name']}/{role}",
                 "sha256": sha256_bytes(canonical({**spec, "split": role})),
                 "how": how} for role in ("train", "test")]
    from evals.datasets import get_benchmark

    out = []
    for role, name in (("train", data["train_benchmark"]), ("test", data["test_benchmark"])):
        b = get_benchmark(name)
        sha = getattr(b, "sha256", None) or ""
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise SubmitError(f"benchmark {name!r} has no sha256 in evals/datasets/registry.py; add it")
        out.append({"role": role, "id": f"{name} ({getattr(b, 'hub_id', '') or 'local'})", "sha256": sha,
                    "how": "evals/datasets/registry.py (local file checksum)"})
    return out


def eval_protocol(cfg: dict, metric: str) -> dict:
    world, data, rollout, trainer = cfg["world"], cfg["data"], cfg["rollout"], cfg["trainer"]
    m = re.fullmatch(r"test/(greedy|avg@(\d+))", metric)
    if not m:
        raise SubmitError(f"metric {metric!r}: use test/greedy or test/avg@k")
    n, temperature = (1, 0.0) if m.group(1) == "greedy" else (int(m.group(2)), 1.0)
    if world["kind"] == "tiny":
        import evals.datasets.tinyworld_task as task

        benchmark = f"tinyworld/{world['name']} test split"
        template_sha = sha256_bytes(TINY_PROMPT_TEMPLATE.encode())
        criterion = task.criterion_name(world["criterion"], world.get("target_style", task.FEATURES))
        grader = {"name": f"evals.datasets.tinyworld_task criterion={criterion}",
                  "version": sha256_file(Path(task.__file__))[:16]}
        thinking = False
    else:
        from evals.datasets import get_benchmark
        from evals.datasets.templates import template_hash

        benchmark = data["test_benchmark"]
        template_sha = template_hash(data["prompt_template"])
        rows = int(getattr(get_benchmark(benchmark), "rows", 0) or 0)
        version = package_versions().get("math-verify") if data["grader"] == "math_verify" else None
        grader = {"name": data["grader"], "version": version or package_versions()["effopd-bench"]}
        thinking = bool(data["enable_thinking"])
    problems = int(data["test_prompts"])
    if world["kind"] != "tiny" and rows:
        problems = min(problems, rows) if problems else rows  # test_prompts caps the benchmark; 0 = all rows
    return {"benchmark": benchmark, "metric": metric, "num_problems": problems, "n": n,
            "temperature": temperature, "top_p": float(rollout["top_p"]) if n > 1 else 1.0,
            "max_new_tokens": int(rollout["max_new_tokens"]), "prompt_template_hash": template_sha,
            "thinking_mode": thinking, "grader": grader, "eval_every": int(trainer["eval_every"])}


# ------------------------------------------------------------------------------------------ collecting

def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-") or "submission"


def _load_config(folder: Path) -> dict:
    path = folder / "config.yaml"
    if not path.exists():
        raise SubmitError(f"{folder}: no config.yaml; is this a bench.train run folder?")
    return yaml.safe_load(path.read_text())


def _table_runs(table_path: Path, runs_dir: Path) -> tuple[list[RunRecord], dict]:
    """The runs behind a table JSON's rows (renaming the LR sweep's winner to its row name)."""
    table = json.loads(table_path.read_text())
    runs = load_runs(runs_dir)
    row_methods = [r["method"] for r in table["rows"]]
    selected = (table.get("lr_sweep") or {}).get("selected")
    out = []
    for row in table["rows"]:
        label = row["method"]
        mine = [r for r in runs if r.method == label and r.seed in row["seeds"]]
        if not mine and selected and selected not in row_methods:
            mine = [RunRecord(**{**r.__dict__, "method": label}) for r in runs
                    if r.method == selected and r.seed in row["seeds"]]
        if sorted(r.seed for r in mine) != sorted(row["seeds"]):
            raise SubmitError(f"{table_path}: row {label!r} needs seeds {row['seeds']} but {runs_dir} holds "
                              f"{sorted(r.seed for r in mine)}; pass --runs <the table's runs folder>")
        out += mine
    return out, table


def collect(source: Path, runs_dir: Path | None, reference_runs: Path | None, methods: list[str] | None):
    """(runs, roles, table json or None, source kind, runs root)."""
    table = None
    if source.suffix == ".json":
        runs_dir = runs_dir or REPO_ROOT / "runs" / source.stem
        runs, table = _table_runs(source, runs_dir)
        kind, root = "table", runs_dir
    elif source.is_dir():
        runs = load_runs(source)
        kind, root = ("run" if len(runs) == 1 else "runs"), source
    else:
        raise SubmitError(f"{source}: not a run folder, a tree of runs, or a table .json")
    if methods:
        missing = set(methods) - {r.method for r in runs}
        if missing:
            raise SubmitError(f"--methods {sorted(missing)} not among {sorted({r.method for r in runs})}")
        runs = [r for r in runs if r.method in methods]
    roles = {r.method: "submitted" for r in runs}
    if reference_runs is not None:
        ref = load_runs(reference_runs)
        for r in ref:
            roles.setdefault(r.method, "reference")
        runs += [r for r in ref if roles[r.method] == "reference"]
    return runs, roles, table, kind, root


def eval_entry(folder: Path) -> tuple[dict, list[dict]]:
    """An `evals.run` results folder as a bundle entry, plus its per-sample records (for the sidecar)."""
    summary_path, samples_path = folder / "summary.json", folder / "samples.jsonl"
    if not summary_path.exists() or not samples_path.exists():
        raise SubmitError(f"--eval {folder}: needs summary.json and samples.jsonl (python -m evals.run output)")
    summary = json.loads(summary_path.read_text())
    proto, metrics = summary["protocol"], summary["metrics"]
    sampling = proto["sampling"]
    records = sorted(read_jsonl(samples_path), key=lambda r: (str(r["problem_id"]), r["sample_index"]))
    records = [r for r in records if r["sample_index"] < sampling["n"]]
    entry = {
        "benchmark": proto["benchmark"], "model": proto["model"], "n": int(sampling["n"]),
        "temperature": float(sampling["temperature"]), "top_p": float(sampling["top_p"]),
        "max_new_tokens": int(sampling["max_new_tokens"]), "prompt_template_hash": proto["prompt_template_hash"],
        "thinking_mode": bool(proto.get("enable_thinking", False)), "grader": proto["grader"],
        "dataset_sha256": proto.get("dataset_sha256") or "", "protocol": proto, "metrics": metrics,
        "samples": {"sha256": sha256_bytes(canonical(records)), "count": len(records)},
        "summary_sha256": sha256_file(summary_path),
    }
    return entry, records


def _sidecar_records(runs: list[RunRecord], root: Path) -> list[dict]:
    out = []
    for r in sorted(runs, key=lambda r: (r.method, r.seed)):
        for stream in STREAMS:
            for rec in read_jsonl(r.path / f"{stream}.jsonl"):
                out.append({"method": r.method, "seed": r.seed, "stream": stream, "record": rec})
    return out


def build_bundle(source: str | Path, *, name: str, contact: str, track: str = "tiny-cpu", title: str | None = None,
                 runs_dir: str | Path | None = None, reference_runs: str | Path | None = None,
                 methods: list[str] | None = None, ci_method: str = "t", submitted_at: str | None = None,
                 sidecar: bool = True, tracks: dict | None = None,
                 evals: list[str | Path] = (), revisions: dict[str, str] | None = None) -> tuple[dict, bytes | None]:
    """(bundle, gzip sidecar bytes or None). Raises SubmitError with the fix in the message."""
    source = Path(source)
    tracks = tracks if tracks is not None else load_tracks()
    if track not in tracks:
        raise SubmitError(f"--track {track!r} unknown; tracks: {sorted(tracks)} (experiments/leaderboard/tracks.yaml)")
    spec = tracks[track]
    runs, roles, table, kind, root = collect(source, Path(runs_dir) if runs_dir else None,
                                             Path(reference_runs) if reference_runs else None, methods)
    reference = spec["reference"]
    if reference not in roles:
        if len(roles) == 1:
            raise SubmitError(f"speedups need {reference!r} runs on the same seeds: pass --reference-runs "
                              f"<folder of {reference} runs>")
        raise SubmitError(f"no {reference!r} runs among {sorted(roles)}; pass --reference-runs")
    metric = spec["metric"]
    analysis = {"reference": reference, "target_fraction": float(spec["target_fraction"]), "metric": metric,
                "final_window": int(spec["final_window"]), "ci_method": ci_method}
    curves = sorted((curve_of(r, metric) for r in runs), key=lambda c: (c["method"], c["seed"]))
    entries, target = compute_entries(curves, analysis, roles)
    analysis["target"] = target
    if table is not None:  # the table we package must say what its runs say
        rows = {r["method"]: r for r in table["rows"]}
        for e in entries:
            row = rows.get(e["method"])
            if row is None:
                continue
            for k in ("final_accuracy", "steps_to_target", "speedup_steps", "speedup_wall"):
                a, b = row[k]["mean"], e["metrics"][k]["mean"]
                if (a is None) != (b is None) or (a is not None and abs(a - b) > 1e-6 * max(1.0, abs(a))):
                    raise SubmitError(f"{source}: row {e['method']!r} {k} = {a} but its runs give {b}; "
                                      "rebuild the table (make reproduce-table2) or submit the runs folder")

    configs, run_entries = {}, []
    for r in sorted(runs, key=lambda r: (r.method, r.seed)):
        cfg = _load_config(r.path)
        configs[(r.method, r.seed)] = cfg
        files = [file_entry(r.path / f, r.path) for f in RUN_FILES if (r.path / f).exists()]
        final = next((f["sha256"] for f in files if f["path"] == "final_model/model.safetensors"), None)
        rel = os.path.relpath(r.path, REPO_ROOT) if r.path.resolve().is_relative_to(REPO_ROOT) else str(r.path)
        run_entries.append({"path": rel, "method": r.method, "seed": r.seed, "config": cfg,
                            "config_sha256": sha256_bytes(canonical(cfg)), "files": files, "final_model": final})
    first = configs[min(configs)]
    machine = (table or {}).get("machine")
    if machine:
        hardware = {"cpu_model": cpu_model() if machine.get("processor") in ("x86_64", "aarch64", "", None)
                    else machine["processor"], "cpu_count": int(machine.get("cpus") or 1), "gpu_model": None,
                    "gpu_count": 0, "platform": machine.get("platform", platform.platform()),
                    "parallel_runs": machine.get("parallel_runs"),
                    "source": f"{source.name} machine block (CPU model name read on the submit host)"}
    else:
        hardware = this_machine(None)
    commit = ((table or {}).get("git_commit") or "").replace("-dirty", "")
    if commit:
        git = {"commit": commit, "dirty": (table or {}).get("git_commit", "").endswith("-dirty"),
               "source": f"{source.name} git_commit"}
    else:
        head, dirty = git_state()
        git = {"commit": head, "dirty": dirty, "source": "submit host checkout (runs do not record their commit)"}
    packages = package_versions()
    if machine and machine.get("torch"):
        packages["torch"] = machine["torch"]
    train_total = round(sum(c["train_seconds"] for c in curves), 4)
    table_file = file_entry(source, source.parent) if table is not None else None
    if table_file:
        table_file["path"] = os.path.relpath(source.resolve(), REPO_ROOT) if source.resolve().is_relative_to(
            REPO_ROOT) else str(source)
    bundle = {
        "schema_version": SCHEMA_VERSION,
        "id": "",
        "submitted_at": submitted_at or _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "submitter": {"name": name, "contact": contact},
        "track": track,
        "title": title or (table or {}).get("title") or f"{', '.join(sorted(roles))} ({first['world']['name']})",
        "source": {"kind": kind, "runs_dir": os.path.relpath(root.resolve(), REPO_ROOT)
                   if root.resolve().is_relative_to(REPO_ROOT) else str(root), "table_json": table_file},
        "provenance": {"git": git, "packages": packages, "hardware": hardware,
                       "wall_clock": {"total_seconds": (table or {}).get("total_wall_seconds"),
                                      "train_seconds": train_total,
                                      "source": "summary.json train_seconds summed over runs; total from the table"}},
        "models": world_models(first, revisions),
        "datasets": datasets_of(first),
        "eval_protocol": eval_protocol(first, metric),
        "analysis": analysis,
        "entries": entries,
        "curves": curves,
        "runs": run_entries,
        "sidecar": None,
        "evals": [],
        "hashes": {"curves_sha256": sha256_bytes(canonical(curves)),
                   "runs_sha256": sha256_bytes(canonical(run_entries))},
        "digest": "",
    }
    bundle["id"] = f"{_slug(bundle['title'])}-{bundle['hashes']['curves_sha256'][:10]}"
    eval_records = []
    for i, folder in enumerate(evals):
        entry, recs = eval_entry(Path(folder))
        bundle["evals"].append(entry)
        eval_records += [{"eval": i, "stream": "samples", "record": r} for r in recs]
    if eval_records and not sidecar:
        raise SubmitError("--eval needs the sidecar (its samples are what the metrics are checked against); "
                          "drop --no-sidecar")
    blob = None
    if sidecar:
        records = _sidecar_records(runs, root) + eval_records
        raw = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()
        blob = gzip.compress(raw, compresslevel=9, mtime=0)
        bundle["sidecar"] = {"path": f"{bundle['id']}.records.jsonl.gz", "sha256": sha256_bytes(blob),
                             "bytes": len(blob), "records": len(records)}
    bundle["digest"] = bundle_digest(bundle)
    return bundle, blob


def write_bundle(bundle: dict, blob: bytes | None, out_dir: str | Path = SUBMISSIONS_DIR) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if blob is not None:
        path = out / bundle["sidecar"]["path"]
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, path)
    target = out / f"{bundle['id']}.json"
    atomic_write_json(target, bundle)
    return target
