"""The world builds as a random factor: per world and build, what kind of student (and teacher) it has.

``python -m bench.tinyworld report [world=style,flip,scratch] [--builds 0,1,2] [--build-missing] [--out DIR]
[overrides...]`` reads each build's cached ``build_report.json`` files and writes ``<out>/world_builds.json`` and
``.md`` (``out`` defaults to ``results/``): the student's greedy and sampled (avg@4) answer accuracy, its success
under the world's criterion and its new-style share (responses written in the world's target style, whatever
their answer), and the teacher's success, plus the spread between builds per world. A build that is not cached
is listed as not built (``--build-missing`` builds it first: minutes per world on a CPU).
"""

from __future__ import annotations

from pathlib import Path

from bench.world.digest import record_reference, world_status
from bench.world.tiny.build import (
    REPORT,
    complete_report,
    model_key,
    recipe_of,
    roles_of,
    tiny_world_digests,
    world_build,
    world_criterion,
    world_view,
)
from core.io import atomic_write_json, atomic_write_text
from core.paths import RESULTS_DIR

WORLDS = ("style", "flip", "scratch")
REPORT_ROLES = ("student", "teacher")
# (column, role, metric of world_view) in the markdown table and the spread
COLUMNS = (
    ("student greedy answer", "student", "greedy/answer"),
    ("student avg@4 answer", "student", "sampled_avg@4/answer"),
    ("student greedy new style", "student", "greedy/new_style_share"),
    ("student avg@4 new style", "student", "sampled_avg@4/new_style_share"),
    ("student avg@4 success", "student", "sampled_avg@4/success"),
    ("teacher greedy success", "teacher", "greedy/success"),
    ("teacher avg@4 success", "teacher", "sampled_avg@4/success"),
)


def _world(name: str, build: int, overrides: list[str]):
    from bench.config import compose_config

    return compose_config([f"world={name}", f"world.build={build}", *overrides]).world


def build_row(world) -> dict:
    """One world build: its models' keys, seeds and world-view numbers (``built`` False when a model is not
    cached; the missing roles are listed)."""
    cache = Path(world.cache_dir)
    row = {"world": world.name, "build": world_build(world), "criterion": world_criterion(world),
           "target_style": list(world.target_style), "built": True, "missing": []}
    for role in REPORT_ROLES:
        path = cache / model_key(world, role)
        entry = {"key": path.name, "seed": recipe_of(world, role)["seed"]}
        if (path / REPORT).exists():
            report = complete_report(path, world.digits)
            entry |= {"train_seconds": report["train_seconds"], **world_view(report["test"], world)}
        else:
            row["built"] = False
            row["missing"].append(role)
        row[role] = entry
    row["digests"] = tiny_world_digests(world, roles_of(world))  # every model of the build, the base included
    return row


def report_digests(report: dict) -> dict[str, str]:
    """{model key: weights digest} of every built model in a report (shared models once)."""
    return {d["key"]: d["weights_sha256"] for r in report["rows"] for d in r.get("digests", {}).values()}


def record_report_reference(report: dict, machine: dict) -> None:
    """Make the report's models the reference world (results/world_digests.json), merged into what is there."""
    from bench.world.digest import load_reference

    models = [{"key": d["key"], "role": role, "build": r["build"], "world": r["world"],
               "weights_sha256": d["weights_sha256"]} for r in report["rows"] for role, d in r["digests"].items()]
    kept = [{"key": k, **v} for k, v in load_reference().items() if k not in {m["key"] for m in models}]
    record_reference(kept + models, machine)


def spread(rows: list[dict]) -> dict:
    """Per world: each column's [min, max] and mean over its built builds."""
    out = {}
    for name in dict.fromkeys(r["world"] for r in rows):
        built = [r for r in rows if r["world"] == name and r["built"]]
        if not built:
            continue
        out[name] = {"builds": [r["build"] for r in built]}
        for column, role, metric in COLUMNS:
            values = [r[role][metric] for r in built]
            out[name][column] = {"min": min(values), "max": max(values), "mean": sum(values) / len(values)}
    return out


def world_builds_report(worlds: list[str], builds: list[int], overrides: list[str] = (),
                        build_missing: bool = False) -> dict:
    """The per-build report of ``worlds`` x ``builds`` (config ``overrides`` apply to every world)."""
    if not worlds or not builds:
        raise ValueError("name at least one world and one build (world=style --builds 0,1,2)")
    if any(b < 0 for b in builds):
        raise ValueError(f"--builds {builds}: builds are 0 (the recipes' own seeds) or positive numbers")
    rows = []
    for name in worlds:
        for b in builds:
            if build_missing:
                from bench.world.tiny.build import build_world

                build_world([f"world={name}", f"world.build={b}", *overrides])
            rows.append(build_row(_world(name, b, overrides)))
    report = {"worlds": list(worlds), "builds": list(builds), "overrides": list(overrides),
              "modes": {"greedy": "temperature 0", "sampled_avg@4": "temperature 1, 4 samples per prompt"},
              "test_prompts": 256, "rows": rows, "spread": spread(rows)}
    digests = report_digests(report)
    if digests:
        report["world_status"] = world_status(digests)
    return report


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def render_markdown(report: dict) -> str:
    lines = ["# Tiny-world builds", "", *([report["world_status"]["line"], ""] if "world_status" in report else []),
             "Each build trains every role of a world from its own recipe seeds (seed + 1000 x build). Test split, "
             f"{report['test_prompts']} prompts; greedy and avg@4 (temperature 1). *New style*: the share of "
             "responses written in the world's target style, whatever their answer; *success*: the world's "
             "criterion (the correct answer in the target style, or any correct answer in `scratch`).", "",
             "| world | build | criterion | " + " | ".join(c for c, _, _ in COLUMNS) + " |",
             "|" + "---|" * (3 + len(COLUMNS))]
    for r in report["rows"]:
        head = f"| {r['world']} | {r['build']} | `{r['criterion']}` |"
        if not r["built"]:
            cmd = f"python -m bench.tinyworld build world={r['world']} world.build={r['build']}"
            lines.append(head + f" not built ({', '.join(r['missing'])}): `{cmd}` |" + " |" * (len(COLUMNS) - 1))
            continue
        lines.append(head + "".join(f" {_pct(r[role][metric])} |" for _, role, metric in COLUMNS))
    if report["spread"]:
        lines += ["", "Spread between builds (min-max, mean):", ""]
        for name, s in report["spread"].items():
            parts = [f"{c} {_pct(s[c]['min'])}-{_pct(s[c]['max'])} (mean {_pct(s[c]['mean'])})"
                     for c, _, _ in COLUMNS]
            lines.append(f"- **{name}** (builds {', '.join(map(str, s['builds']))}): " + "; ".join(parts))
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: Path = RESULTS_DIR) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "world_builds.json", report)
    atomic_write_text(out / "world_builds.md", render_markdown(report))
    return out / "world_builds.json", out / "world_builds.md"


def parse_args(argv: list[str]) -> dict:
    """``report``'s arguments: ``world=a,b``, ``--builds 0,1,2``, ``--build-missing``, ``--record-reference``,
    ``--out DIR``; every
    other ``key=value`` is a config override applied to each world."""
    args = {"worlds": list(WORLDS), "builds": [0], "overrides": [], "build_missing": False, "out": RESULTS_DIR,
            "record_reference": False}
    it = iter(argv)
    for arg in it:
        if arg in ("--builds", "--out"):
            value = next(it, None)
            if value is None:
                raise ValueError(f"{arg} needs a value (--builds 0,1,2 / --out results)")
            if arg == "--out":
                args["out"] = Path(value)
                continue
            try:
                args["builds"] = [int(b) for b in value.split(",")]
            except ValueError:
                raise ValueError(f"--builds {value!r}: give build numbers separated by commas, e.g. 0,1,2") from None
        elif arg == "--build-missing":
            args["build_missing"] = True
        elif arg == "--record-reference":
            args["record_reference"] = True
        elif arg.startswith("world.build="):
            raise ValueError(f"{arg}: name the builds with --builds (e.g. --builds 0,1,2)")
        elif arg.startswith("world="):
            args["worlds"] = [w for w in arg.split("=", 1)[1].split(",") if w]
        elif arg.startswith("--") or "=" not in arg:
            raise ValueError(f"unknown argument {arg!r}; use world=..., --builds, --build-missing, --out or "
                             "config overrides key=value")
        else:
            args["overrides"].append(arg)
    return args
