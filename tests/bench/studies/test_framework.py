"""The study framework: the registry, the CLI, one job builder for every study, and no study importing another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bench.studies import cli, framework
from bench.studies.framework import STUDIES, load_studies, option, ordered_studies, register_study
from core.paths import REPO_ROOT

STUDIES_DIR = REPO_ROOT / "bench" / "studies"
FRAMEWORK = ("cli", "fingerprint", "framework", "jobs", "launcher", "map_grid", "paper", "report", "run_metrics",
             "speedup", "stats")


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement in ``path`` names (``from a.b import c`` gives a.b and a.b.c)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def study_files() -> dict[str, list[Path]]:
    """{registered study's module: its files} (a study's own package, e.g. analysis/ for the analysis study)."""
    out = {}
    for study in load_studies().values():
        path = REPO_ROOT / (study.module.replace(".", "/") + ".py")
        files = [path]
        if study.name == "analysis":
            files += sorted((STUDIES_DIR / "analysis").glob("*.py"))
        out[study.module] = files
    return out


def test_the_studies_are_registered():
    studies = load_studies()
    assert {"table2", "efficiency", "regimes", "analysis"} <= set(studies)
    assert studies["table2"].module == "bench.studies.table2"
    assert studies["analysis"].module == "bench.studies.parameter_dynamics"
    order = [s.name for s in ordered_studies()]
    assert order.index("table2") < order.index("efficiency") < order.index("analysis")
    assert order.index("table2") < order.index("regimes")
    seeds = {o.flags[0]: o.kwargs.get("default") for o in studies["table2"].options}
    assert seeds["--seeds"] == 8 and seeds["--builds"] == 8 and seeds["--runs-dir"] == "runs/table2"


def test_a_study_name_cannot_be_taken_twice(monkeypatch):
    monkeypatch.setitem(STUDIES, "table2", STUDIES["table2"])

    def other(ctx):
        return {}

    other.__module__ = "somewhere.else"
    with pytest.raises(ValueError, match="registered twice"):
        register_study("table2")(other)


def test_no_study_imports_another_study():
    files = study_files()
    studies = set(files)
    for module, paths in files.items():
        for path in paths:
            bad = {m for m in imported_modules(path) for s in studies - {module} if m == s or m.startswith(s + ".")}
            assert not bad, f"{path} imports another study: {bad}"
    for name in FRAMEWORK:  # the shared pieces import no study either
        path = STUDIES_DIR / f"{name}.py"
        bad = {m for m in imported_modules(path) for s in studies if m == s or m.startswith(s + ".")}
        assert not bad, f"{path} imports a study: {bad}"


def test_nothing_below_bench_studies_imports_it():
    commands = {f"bench/{m}.py" for m in ("reproduce", "analysis", "leaderboard", "submit", "tinyworld")}
    for top in ("core", "evals", "bench"):
        for path in (REPO_ROOT / top).rglob("*.py"):
            rel = path.relative_to(REPO_ROOT).as_posix()
            if rel.startswith("bench/studies/") or rel in commands:
                continue  # bench/studies itself, and the thin command modules at bench/ root
            bad = {m for m in imported_modules(path) if m.startswith("bench.studies")}
            assert not bad, f"{path} imports {bad}"


def test_one_job_builder():
    """Jobs are only constructed in jobs.py; every study builds its runs with train_job."""
    for path in STUDIES_DIR.rglob("*.py"):
        if path.name == "jobs.py":
            continue
        calls = [n for n in ast.walk(ast.parse(path.read_text()))
                 if isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == "Job"]
        assert not calls, f"{path} constructs Job(...) itself: use bench.studies.jobs.train_job"
    # A study builds its jobs with train_job, itself or through a shared grid module (map_grid) that does.
    builders = {f"bench.studies.{name}" for name in FRAMEWORK
                if "bench.studies.jobs.train_job" in imported_modules(STUDIES_DIR / f"{name}.py")}
    for module, paths in study_files().items():
        names = set().union(*(imported_modules(p) for p in paths))
        assert "bench.studies.jobs.train_job" in names or names & builders, \
            f"{module} does not build its jobs with train_job"


def test_the_efficiency_sweep_file_is_read_when_the_study_runs(tmp_path, monkeypatch):
    from bench.studies import efficiency

    assert not hasattr(efficiency, "SWEEP") and not hasattr(efficiency, "METHODS")
    bad = tmp_path / "sweep.yaml"
    bad.write_text("methods: {OPD: opd}\nreference: GRPO\ngrid: [2.0e-5]\nextensions: []\nseeds: 1\nsweep_seeds: 1\n")
    monkeypatch.setattr(framework.StudyContext, "build_world", lambda self, world="style": pytest.fail("built"))
    with pytest.raises(ValueError, match="reference 'GRPO'"):
        cli.main(["efficiency", "--sweep-file", str(bad), "--runs-dir", str(tmp_path / "r")])


@pytest.fixture
def dummies(monkeypatch):
    """Two throwaway studies, the second reusing the first's runs."""
    calls = []
    for name, after in (("dummy_b", ("dummy_a",)), ("dummy_a", ())):
        def run(ctx, name=name):
            calls.append((name, ctx.args.workers, ctx.args.knob, type(ctx.launcher).__name__, ctx.stale))
            return {"study": name}

        run.__module__ = f"tests.{name}"
        register_study(name, help=f"{name} help", after=after, options=(option("--knob", type=int, default=7),))(run)
    yield calls
    for name in ("dummy_a", "dummy_b"):
        STUDIES.pop(name)


def test_cli_dispatches_to_the_registry(dummies, monkeypatch, capsys):
    assert cli.main(["dummy_a", "--workers", "3", "--knob", "1", "--stale", "reuse"]) == {"study": "dummy_a"}
    assert dummies == [("dummy_a", 3, 1, "LocalLauncher", "reuse")]
    cli.main(["list"])
    assert "dummy_a" in capsys.readouterr().out
    monkeypatch.setattr(cli, "ordered_studies", lambda: [STUDIES["dummy_a"], STUDIES["dummy_b"]])
    dummies.clear()
    assert cli.main(["all", "--workers", "4", "--launcher", "submitit", "--cluster", "local"]) == {
        "dummy_a": {"study": "dummy_a"}, "dummy_b": {"study": "dummy_b"}}
    assert dummies == [("dummy_a", 4, 7, "SubmititLauncher", "refuse"), ("dummy_b", 4, 7, "SubmititLauncher", "refuse")]
    ordered = [s.name for s in framework.ordered_studies()]
    assert ordered.index("dummy_a") < ordered.index("dummy_b")


def test_bench_analysis_reproduce_is_the_registered_study(monkeypatch):
    from bench.studies.analysis.__main__ import main as analysis_main

    seen = {}
    monkeypatch.setattr(cli, "run_study", lambda name, args, launcher, stale: seen.update(name=name, args=args))
    analysis_main(["reproduce", "--seeds", "1", "--no-eval", "--workers", "1"])
    assert seen["name"] == "analysis"
    assert (seen["args"].seeds, seen["args"].eval, seen["args"].reuse, seen["args"].workers) == (1, False, True, 1)
    assert seen["args"].runs_dir == "runs/analysis" and seen["args"].prompts == 200


def test_analysis_jobs_come_from_the_job_builder(tmp_path):
    from bench.studies.analysis.runs import analysis_jobs

    jobs = analysis_jobs(tmp_path, [0])
    assert [j.run_dir for j in jobs] == [tmp_path / "OPD" / "seed0", tmp_path / "GRPO" / "seed0"]
    assert jobs[1].overrides == ["experiment=grpo", "world=style", "trainer.seed=0", "trainer.lr=6e-05", "method=GRPO",
                                 "logging.wandb=disabled", "data.selection_prompts=0",
                                 "trainer.snapshot_steps=pow2+every:5"]


@pytest.mark.parametrize("name", sorted(load_studies()))
def test_every_study_prints_its_help(name, capsys):
    """argparse %-formats help strings: a bare '%' in an option's help crashed `<study> --help` before."""
    with pytest.raises(SystemExit) as done:
        cli.main([name, "--help"])
    assert done.value.code == 0
    assert "usage" in capsys.readouterr().out
