"""World builds in the study tables: runs learn their build, tables over several builds pair runs by (build, seed),
use the hierarchical bootstrap and show the between-build spread; single-build tables stay as they were; jobs
spread seeds over builds (``builds_for``) and put a run in a build (``train_job(..., build=b)``)."""

from __future__ import annotations

import json

import pytest

from bench.studies.jobs import builds_for, existing_job, train_job
from bench.studies.speedup import CI_METHODS, build_speedup_table, load_runs, write_speedup_table
from bench.studies.stats import mean_ci

STEPS = 60


def write_build_run(root, method, seed, build, cross_step, final=1.0, config="yaml", sec_per_step=2.0,
                    validation_s=0.0):
    """A finished run folder whose test/greedy is 0.1 before ``cross_step`` and ``final`` from it on.

    ``config``: "yaml" writes config.yaml with world.build, "summary" records it as summary.json's world_build
    only, None writes neither (a run made before builds existed).
    """
    folder = root / f"build{build}" / method / f"seed{seed}"
    folder.mkdir(parents=True)
    evals = [{"step": s, "train_seconds": s * sec_per_step, "test/greedy": final if s >= cross_step else 0.1}
             for s in range(STEPS + 1)]
    (folder / "evals.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    summary = {"method": method, "seed": seed, "lr": 2e-5, "world": "style", "status": "complete",
               "validation_seconds": validation_s}
    if config == "summary":
        summary["world_build"] = build
    (folder / "summary.json").write_text(json.dumps(summary))
    if config == "yaml":
        (folder / "config.yaml").write_text(f"world:\n  name: style\n  build: {build}\ntrainer:\n  seed: {seed}\n")
    return folder


def rows(table):
    return {r["method"]: r for r in table["rows"]}


def width(stat):
    lo, hi = stat["ci95"]
    return hi - lo


# ---------------------------------------------------------------- runs learn their build

def test_load_runs_reads_the_build(tmp_path):
    write_build_run(tmp_path, "OPD", 0, 2, 20)
    write_build_run(tmp_path, "OPD", 1, 1, 20, config="summary")
    write_build_run(tmp_path, "OPD", 2, 0, 20, config=None)
    got = {r.seed: r.build for r in load_runs(tmp_path)}
    assert got == {0: 2, 1: 1, 2: 0}


def test_load_runs_rejects_a_bad_build(tmp_path):
    folder = write_build_run(tmp_path, "OPD", 0, 0, 20)
    (folder / "config.yaml").write_text("world:\n  build: -1\n")
    with pytest.raises(ValueError, match=r"world\.build = -1.*integer >= 0") as err:
        load_runs(tmp_path)
    assert str(folder) in str(err.value)


# ---------------------------------------------------------------- single build: as before

def test_build_zero_tables_are_unchanged(tmp_path):
    """config.yaml with world.build 0 gives byte-identical outputs to runs without any build record."""
    outs = {}
    for config in ("yaml", None):
        root = tmp_path / f"runs-{config}"
        for seed, (opd, eff) in enumerate([(30, 10), (24, 12), (28, 20)]):
            write_build_run(root, "OPD", seed, 0, opd, config=config)
            write_build_run(root, "EffOPD", seed, 0, eff, config=config, validation_s=3.0)
        runs = load_runs(root)
        assert {r.build for r in runs} == {0}
        table = build_speedup_table(runs)
        assert "builds" not in table and "between_builds" not in table["rows"][0]
        assert "build" not in table["rows"][0]["per_seed"][0] and "n_builds" not in table["rows"][0]["speedup_steps"]
        assert table["ci_method"] == CI_METHODS["t"]
        paths = write_speedup_table(table, tmp_path / f"out-{config}", runs)
        outs[config] = {k: paths[k].read_text() for k in ("json", "csv", "md")}
    assert outs["yaml"] == outs[None]
    assert "Between world builds" not in outs[None]["md"] and "builds" not in outs[None]["csv"]


def test_a_single_other_build_keeps_seed_cis_but_names_the_build(tmp_path):
    for seed, (opd, eff) in enumerate([(30, 10), (24, 12), (28, 20)]):
        write_build_run(tmp_path, "OPD", seed, 2, opd)
        write_build_run(tmp_path, "EffOPD", seed, 2, eff)
    table = build_speedup_table(load_runs(tmp_path))
    eff = rows(table)["EffOPD"]
    assert table["builds"] == [2] and eff["builds"] == [2] and table["ci_method"] == CI_METHODS["t"]
    assert eff["speedup_steps"] == mean_ci([3.0, 2.0, 1.4])  # the t interval over seeds, as before builds
    assert "between_builds" not in eff and "on world builds [2]" in table["target"]["definition"]
    md = write_speedup_table(table, tmp_path / "out", load_runs(tmp_path))["md"].read_text()
    assert "Between world builds" not in md and "| EffOPD | 3 |" in md


# ---------------------------------------------------------------- several builds

def spread_runs(root, eff_steps):
    """OPD crosses at step 30 everywhere; EffOPD at eff_steps[build][i] for seed 3 * build + i."""
    for build, steps in enumerate(eff_steps):
        for i, s in enumerate(steps):
            seed = 3 * build + i
            write_build_run(root, "OPD", seed, build, 30)
            write_build_run(root, "EffOPD", seed, build, s, validation_s=2.0 + build)
    return load_runs(root)


@pytest.mark.parametrize("ci_method, name", [("t", "cluster_t"), ("bootstrap", "hierarchical")])
def test_large_build_effect_widens_the_ci(tmp_path, ci_method, name):
    runs = spread_runs(tmp_path / "a", [(10, 11, 12), (20, 21, 22), (28, 29, 30)])
    table = build_speedup_table(runs, ci_method=ci_method)
    eff = rows(table)["EffOPD"]
    assert table["ci_method"] == CI_METHODS[name] and table["builds"] == [0, 1, 2]
    assert eff["speedup_steps"]["n"] == 9 and eff["speedup_steps"]["n_builds"] == 3
    speedups = [30 / s for steps in [(10, 11, 12), (20, 21, 22), (28, 29, 30)] for s in steps]
    assert eff["speedup_steps"]["mean"] == pytest.approx(sum(speedups) / 9)
    seeds_only = {m: mean_ci(speedups, method=m) for m in ("t", "bootstrap")}
    # The same runs as if one build: the one-level CIs over seeds are much narrower.
    flat = build_speedup_table([type(r)(**{**r.__dict__, "build": 0}) for r in runs], ci_method="bootstrap")
    assert rows(flat)["EffOPD"]["speedup_steps"] == seeds_only["bootstrap"]
    for stat in seeds_only.values():
        assert width(eff["speedup_steps"]) > 1.3 * width(stat)
    assert width(eff["steps_to_target"]) > 1.3 * width(mean_ci([p["steps_to_target"] for p in eff["per_seed"]],
                                                                 method="bootstrap"))
    lo, hi = eff["speedup_steps"]["ci95"]
    assert lo < eff["speedup_steps"]["mean"] < hi
    # The between-build spread: per-build means, their range and sd.
    spread = eff["between_builds"]["steps_to_target"]
    assert [p["mean"] for p in spread["per_build"]] == [11.0, 21.0, 29.0]
    assert [p["build"] for p in spread["per_build"]] == [0, 1, 2] and spread["range"] == [11.0, 29.0]
    assert spread["sd"] == pytest.approx(9.0185, abs=1e-3)
    assert [p["mean"] for p in eff["between_builds"]["validation_overhead_seconds"]["per_build"]] == [2.0, 3.0, 4.0]
    assert [p["build"] for p in eff["per_seed"]] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_identical_builds_match_the_one_level_bootstrap(tmp_path):
    """Three copies of one build: resampling builds adds nothing, so the interval is the seeds-only one."""
    runs = spread_runs(tmp_path, [(10, 15, 25)] * 3)
    eff = rows(build_speedup_table(runs, ci_method="bootstrap"))["EffOPD"]
    one_level = mean_ci([30 / s for s in (10, 15, 25)] * 3, method="bootstrap")
    assert eff["speedup_steps"]["mean"] == pytest.approx(one_level["mean"])
    for a, b in zip(eff["speedup_steps"]["ci95"], one_level["ci95"]):
        assert a == pytest.approx(b, abs=0.05 * width(one_level))
    assert eff["between_builds"]["speedup_steps"]["sd"] == pytest.approx(0.0, abs=1e-12)


def test_hierarchical_ci_is_deterministic(tmp_path):
    runs = spread_runs(tmp_path, [(10, 11, 12), (20, 21, 22), (28, 29, 30)])
    assert build_speedup_table(runs) == build_speedup_table(runs)


def test_speedups_pair_by_build_and_seed(tmp_path):
    """Seed 0 in builds 0 and 1: each EffOPD run is compared with the OPD run of its own build."""
    write_build_run(tmp_path, "OPD", 0, 0, 30)
    write_build_run(tmp_path, "OPD", 0, 1, 10)
    write_build_run(tmp_path, "EffOPD", 0, 0, 10)  # 30 / 10 = 3
    write_build_run(tmp_path, "EffOPD", 0, 1, 5)  # 10 / 5 = 2
    write_build_run(tmp_path, "EffOPD", 0, 2, 5)  # no OPD run in build 2: excluded, not paired with another build
    table = build_speedup_table(load_runs(tmp_path))
    eff = rows(table)["EffOPD"]
    assert eff["seeds"] == [0, 0, 0] and eff["builds"] == [0, 1, 2] and eff["n_seeds"] == 3
    assert eff["pairs_excluded"] == 1 and eff["speedup_steps"]["mean"] == pytest.approx(2.5)
    assert [p["mean"] for p in eff["between_builds"]["speedup_steps"]["per_build"]] == [3.0, 2.0, None]
    assert eff["speedup_wall"]["mean"] == pytest.approx(2.5)
    assert "on world builds [0, 1]" in table["target"]["definition"]


def test_per_build_targets_time_each_run_against_its_own_build(tmp_path):
    """Build 0's OPD ends at 0.6, build 1's at 1.0: a pooled target (0.95 x 0.8 = 0.76) is out of build 0's reach;
    per-build targets (0.57 and 0.95) time each run against its own build's reference."""
    for seed in (0, 1):
        write_build_run(tmp_path, "OPD", seed, 0, 20, final=0.6)
        write_build_run(tmp_path, "OPD", seed, 1, 10, final=1.0)
        write_build_run(tmp_path, "EffOPD", seed, 0, 10, final=0.6)
        write_build_run(tmp_path, "EffOPD", seed, 1, 5, final=1.0)
    pooled = build_speedup_table(load_runs(tmp_path))
    assert pooled["target"]["value"] == pytest.approx(0.76) and rows(pooled)["EffOPD"]["reached_target"] == "2/4"
    table = build_speedup_table(load_runs(tmp_path), target_per_build=True)
    assert table["target"]["per_build"] == {"0": pytest.approx(0.57), "1": pytest.approx(0.95)}
    assert table["target"]["value"] == pytest.approx(0.76)
    assert "build 0 0.5700, build 1 0.9500" in table["target"]["definition"]
    eff = rows(table)["EffOPD"]
    assert eff["reached_target"] == "4/4" and eff["pairs_excluded"] == 0
    assert [p["steps_to_target"] for p in eff["per_seed"]] == [10, 10, 5, 5]
    assert eff["speedup_steps"]["mean"] == pytest.approx(2.0)
    write_build_run(tmp_path, "EffOPD", 0, 2, 5)  # a build the reference never ran on has no target
    with pytest.raises(ValueError, match=r"no run on world build\(s\) \[2\]"):
        build_speedup_table(load_runs(tmp_path), target_per_build=True)


def test_auto_targets_are_per_build_exactly_when_the_runs_span_builds(tmp_path):
    for seed in (0, 1):
        write_build_run(tmp_path / "two", "OPD", seed, 0, 20, final=0.6)
        write_build_run(tmp_path / "two", "OPD", seed, 1, 10, final=1.0)
        write_build_run(tmp_path / "one", "OPD", seed, 0, 20, final=0.6 + 0.1 * seed)
    two, one = load_runs(tmp_path / "two"), load_runs(tmp_path / "one")
    assert build_speedup_table(two, target_per_build="auto") == build_speedup_table(two, target_per_build=True)
    assert build_speedup_table(one, target_per_build="auto") == build_speedup_table(one)  # single build: as before
    assert "per_build" not in build_speedup_table(one, target_per_build="auto")["target"]
    with pytest.raises(ValueError, match="target_per_build='yes'"):
        build_speedup_table(one, target_per_build="yes")


def test_duplicate_build_and_seed_is_refused(tmp_path):
    write_build_run(tmp_path / "a", "OPD", 0, 1, 30)
    write_build_run(tmp_path / "b", "OPD", 0, 1, 30)
    with pytest.raises(ValueError, match="duplicate run for method 'OPD' seed 0 build 1"):
        build_speedup_table(load_runs(tmp_path))


def test_a_statistic_from_one_build_only_has_no_ci(tmp_path):
    """A method that reaches the target in one build only: no between-build spread to estimate, so no CI."""
    for build in (0, 1):
        for seed in (0, 1):
            write_build_run(tmp_path, "OPD", seed, build, 30)
            write_build_run(tmp_path, "Slow", seed, build, 20 + seed if build == 0 else STEPS + 1)
    slow = rows(build_speedup_table(load_runs(tmp_path)))["Slow"]
    assert slow["reached_target"] == "2/4"
    assert slow["steps_to_target"] == {"mean": 20.5, "ci95": None, "n": 2, "n_builds": 1}
    assert slow["final_accuracy"]["ci95"] is not None  # every run reports a final accuracy


def test_markdown_and_csv_show_the_spread_only_with_several_builds(tmp_path):
    runs = spread_runs(tmp_path / "runs", [(10, 11, 12), (20, 21, 22), (28, 29, 30)])
    table = build_speedup_table(runs)
    paths = write_speedup_table(table, tmp_path / "out", runs)
    md = paths["md"].read_text()
    assert "## Between world builds" in md and "| EffOPD | 9 over 3 builds |" in md
    assert "b0 11.0 · b1 21.0 · b2 29.0 (range 11.0–29.0, sd 9.0)" in md
    assert "b0 2.74× · b1 1.43× · b2 1.04× (range 1.04–2.74, sd 0.89)" in md
    assert "Student-t interval over world builds" in md and "(world build, seed) pair" in md
    csv_text = paths["csv"].read_text()
    header, opd, eff = csv_text.splitlines()[:3]
    assert ",builds," in header and "speedup_steps_build_sd" in header and "steps_to_target_n_builds" in header
    assert "0;0;0;1;1;1;2;2;2" in eff
    assert json.loads(paths["json"].read_text())["ci_method"] == CI_METHODS["cluster_t"]


def test_caller_cannot_ask_for_an_unknown_ci_method(tmp_path):
    runs = spread_runs(tmp_path, [(10, 11, 12)])
    with pytest.raises(ValueError, match="unknown ci_method 'hierarchical'"):
        build_speedup_table(runs, ci_method="hierarchical")


# ---------------------------------------------------------------- jobs

def test_builds_for_is_round_robin_by_seed_value():
    assert builds_for(range(5), 3) == {0: 0, 1: 1, 2: 2, 3: 0, 4: 1}
    assert builds_for([3, 4], 3) == {3: 0, 4: 1}  # a subset of the seeds keeps each seed's build
    assert builds_for([0, 1, 2], 1) == {0: 0, 1: 0, 2: 0}
    with pytest.raises(ValueError, match="n_builds = 0"):
        builds_for([0], 0)
    with pytest.raises(ValueError, match=r"seeds \[-1\]"):
        builds_for([-1, 2], 2)


def test_train_job_build_override_only_when_not_zero(tmp_path):
    base = train_job(tmp_path, "OPD", "opd", 3, 2e-5, world="flip")
    assert train_job(tmp_path, "OPD", "opd", 3, 2e-5, world="flip", build=0) == base
    assert not any(o.startswith("world.build") for o in base.overrides)
    job = train_job(tmp_path, "OPD", "opd", 3, 2e-5, world="flip", build=2)
    assert job.overrides == [*base.overrides[:2], "world.build=2", *base.overrides[2:]]
    assert job.run_dir == base.run_dir == tmp_path / "OPD" / "seed3"
    with pytest.raises(ValueError, match=r"build = -1.*world\.build"):
        train_job(tmp_path, "OPD", "opd", 3, 2e-5, build=-1)


def test_existing_job_matches_the_build(tmp_path):
    folder = write_build_run(tmp_path, "OPD", 1, 2, 20)
    runs_dir = folder.parent.parent
    (folder / "evals.jsonl").write_text(json.dumps({"step": 0, "test/greedy": 0.1}) + "\n")
    assert existing_job(runs_dir, "OPD", "opd", 1, 2e-5, build=0) is None
    job = existing_job(runs_dir, "OPD", "opd", 1, 2e-5, build=2)
    assert job == train_job(runs_dir, "OPD", "opd", 1, 2e-5, build=2)


def test_a_folder_made_in_another_build_is_stale_not_reused(tmp_path):
    """The folder does not name the build: asking for seed 0 in build 1 where build 0's run lies is refused."""
    from bench.studies.launcher import Launcher, StaleRunError, run_jobs
    from tests.bench.studies.synthetic_runs import fake_train

    class Fake(Launcher):
        name = "fake"

        def launch(self, jobs):
            for job in jobs:
                fake_train(job.run_dir, job.overrides)
            return []

    run_jobs([train_job(tmp_path, "OPD", "opd", 0, 2e-5)], Fake())
    fp = json.loads((tmp_path / "OPD" / "seed0" / "fingerprint.json").read_text())
    assert fp["config"]["world.build"] == 0
    with pytest.raises(StaleRunError, match=r"world\.build: 0 -> 1"):
        run_jobs([train_job(tmp_path, "OPD", "opd", 0, 2e-5, build=1)], Fake())


def test_cluster_t_is_a_t_interval_over_build_means(tmp_path):
    """The default with several builds: each build averaged first, every build weighs the same, df = builds - 1."""
    from bench.studies.stats import cluster_t_mean_ci, t_critical

    got = cluster_t_mean_ci([[10, 12], [20], [30, 31, 32]])
    means = [11.0, 20.0, 31.0]
    m = sum(means) / 3
    sd = (sum((x - m) ** 2 for x in means) / 2) ** 0.5
    half = t_critical(2) * sd / 3**0.5
    assert got["mean"] == pytest.approx(m) and got["n"] == 6 and got["n_builds"] == 3
    assert got["ci95"] == pytest.approx([m - half, m + half])
    assert cluster_t_mean_ci([[1.0, 2.0]])["ci95"] is None  # one build: no between-build spread to estimate
    # Identical builds: the build means agree, so the interval over builds has zero width.
    runs = spread_runs(tmp_path, [(10, 15, 25)] * 3)
    lo, hi = rows(build_speedup_table(runs))["EffOPD"]["speedup_steps"]["ci95"]
    assert hi - lo == pytest.approx(0.0, abs=1e-12)


def test_build_roles_override_only_for_other_builds_and_other_roles(tmp_path):
    from bench.studies.jobs import ALL_ROLES, build_overrides, parse_build_roles

    assert build_overrides(0, ("student",)) == [] and build_overrides(2) == ["world.build=2"]
    assert build_overrides(2, ALL_ROLES) == ["world.build=2"]  # the default roles: fingerprints as before
    assert build_overrides(1, ("student",)) == ["world.build=1", "world.build_roles=[student]"]
    assert parse_build_roles("student, base") == ("base", "student")  # canonical order
    for bad in ("", "pupil", "student,student"):
        with pytest.raises(ValueError, match="--build-roles"):
            parse_build_roles(bad)
    job = train_job(tmp_path, "OPD", "opd", 1, 2e-5, build=1, build_roles=("student",))
    assert "world.build_roles=[student]" in job.overrides
    assert train_job(tmp_path, "OPD", "opd", 0, 2e-5, build_roles=("student",)) == train_job(tmp_path, "OPD", "opd",
                                                                                             0, 2e-5)


def test_existing_job_matches_the_build_roles(tmp_path):
    folder = write_build_run(tmp_path, "OPD", 1, 2, 20)
    runs_dir = folder.parent.parent
    assert existing_job(runs_dir, "OPD", "opd", 1, 2e-5, build=2, build_roles=("student",)) is None  # all three
    (folder / "config.yaml").write_text("world:\n  name: style\n  build: 2\n  build_roles: [student]\n")
    assert existing_job(runs_dir, "OPD", "opd", 1, 2e-5, build=2) is None
    job = existing_job(runs_dir, "OPD", "opd", 1, 2e-5, build=2, build_roles=("student",))
    assert job == train_job(runs_dir, "OPD", "opd", 1, 2e-5, build=2, build_roles=("student",))
