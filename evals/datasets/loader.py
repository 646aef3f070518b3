"""Loading a registered benchmark: a verified local file first, the hub second, the tiny world generated.

The data directory comes from, in order: the caller's ``data_dir`` (the eval config key ``data_dir``), the
``EFFOPD_DATA_DIR`` environment variable, then ``<repo>/../shared/data`` (where CI keeps the offline
copies). Files are read in place and never copied into the project. A local file must match the registry's
sha256 and row count: a silently different benchmark would make results incomparable.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from core.provenance import sha256_file
from evals.datasets.registry import Benchmark, Fields, get_benchmark

DATA_DIR_ENV = "EFFOPD_DATA_DIR"
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SOURCES = ("auto", "local", "hub")


@dataclass(frozen=True)
class Example:
    id: str
    problem: str  # the raw problem text (code: evalplus's prompt); templates.render turns it into the prompt
    answer: str  # gold answer ("" for code: graded by tests)
    meta: dict = field(default_factory=dict)  # extra row fields (subject, entry_point, tiny-world operands)


@dataclass(frozen=True)
class LoadedBenchmark:
    benchmark: Benchmark
    examples: list[Example]
    source: str  # "local:<path>" | "hub:<id>" | "generated"
    sha256: str  # of the local file; "" for hub and generated data


class DataError(ValueError):
    """A benchmark file is missing, differs from the registry, or has rows we cannot read."""


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    chosen = data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser().resolve()


def _fixes(bench: Benchmark, data_dir: Path) -> str:
    return (f"Fix it either way: (1) put the manifest's file at {data_dir / bench.local_file} (sources and "
            f"checksums: shared/data/MANIFEST.md), or point data_dir=... / ${DATA_DIR_ENV} at a folder that "
            f"has it; (2) with a network, load it from the hub instead (source=hub; dataset {bench.hub_id!r}).")


def _read_rows(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _answer_text(value) -> str:
    # AMC23 stores 27.0, AIME25 stores ints: the gold is text, and integral floats lose their ".0".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _to_examples(rows: list[dict], fields: Fields, bench: Benchmark, where: str) -> list[Example]:
    out = []
    for i, row in enumerate(rows):
        for name in (fields.problem, fields.answer, fields.id):
            if name and name not in row:
                raise DataError(f"{where}: row {i} has no field {name!r} (fields: {sorted(row)}); the registry "
                                f"entry for {bench.name!r} (evals/datasets/registry.py) names the wrong column")
        answer = _answer_text(row[fields.answer]) if fields.answer else ""
        if bench.hub_answer_after and where.startswith("hub") and bench.hub_answer_after in answer:
            answer = answer.split(bench.hub_answer_after)[-1].strip().replace(",", "")
        meta = {k: row[k] for k in bench.extra_fields if k in row}
        out.append(Example(id=str(row[fields.id]) if fields.id else str(i), problem=str(row[fields.problem]),
                           answer=answer, meta=meta))
    return out


def _from_local(bench: Benchmark, data_dir: Path) -> LoadedBenchmark:
    path = data_dir / bench.local_file
    digest = sha256_file(path)
    if digest != bench.sha256:
        raise DataError(f"checksum mismatch for benchmark {bench.name!r}: {path} has sha256 {digest}, the "
                        f"registry expects {bench.sha256}. " + _fixes(bench, data_dir))
    rows = _read_rows(path)
    if len(rows) != bench.rows:
        raise DataError(f"{path} has {len(rows)} rows, the registry expects {bench.rows}. " + _fixes(bench, data_dir))
    return LoadedBenchmark(bench, _to_examples(rows, bench.local_fields, bench, f"local file {path}"),
                           f"local:{path}", digest)


def _from_hub(bench: Benchmark) -> LoadedBenchmark:
    import datasets

    ds = datasets.load_dataset(bench.hub_id, bench.hub_config, split=bench.hub_split)
    rows = [dict(r) for r in ds]
    return LoadedBenchmark(bench, _to_examples(rows, bench.hub_fields, bench, f"hub dataset {bench.hub_id}"),
                           f"hub:{bench.hub_id}", "")


def _tiny_world(bench: Benchmark, n: int, digits: int) -> LoadedBenchmark:
    from evals.datasets.tinyworld_task import sample_problems  # lazy: evals must not need the trainer to import

    problems = sample_problems("test", n, seed=0, digits=digits)
    examples = [Example(id=p.uid, problem=p.prompt, answer=p.answer, meta={"a": p.a, "b": p.b}) for p in problems]
    return LoadedBenchmark(bench, examples, "generated", "")


def load_benchmark(name: str, data_dir: str | Path | None = None, source: str = "auto", *, tiny_n: int = 200,
                   tiny_digits: int = 3) -> LoadedBenchmark:
    """Rows of benchmark ``name`` as ``Example``s.

    ``source``: ``local`` reads the verified file only; ``hub`` loads through ``datasets``; ``auto`` reads the
    local file when it exists, else tries the hub and, failing that, raises an error naming both fixes.
    A local file that exists but differs from the registry is always an error (never a silent hub fallback).
    """
    bench = get_benchmark(name)
    if source not in SOURCES:
        raise ValueError(f"source={source!r}; choose one of {SOURCES}")
    if bench.kind == "tiny":
        return _tiny_world(bench, tiny_n, tiny_digits)
    root = resolve_data_dir(data_dir)
    path = root / bench.local_file
    if source == "local" or (source == "auto" and path.exists()):
        if not path.exists():
            raise DataError(f"benchmark {name!r}: no file {path}. " + _fixes(bench, root))
        return _from_local(bench, root)
    try:
        return _from_hub(bench)
    except DataError:
        raise
    except Exception as exc:  # offline, unknown dataset, auth: all mean "not from the hub either"
        where = "" if source == "hub" else f"no file {path}, and "
        raise DataError(f"benchmark {name!r}: {where}loading {bench.hub_id!r} from the hub failed "
                        f"({type(exc).__name__}: {str(exc)[:200]}). " + _fixes(bench, root)) from exc
