"""The flip world (a one-feature target style), the target style reaching every scorer, and world builds as a
random factor (build b = every role's recipe seed + 1000 * b; build 0 = today's models and cache keys)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bench.config import compose_config
from bench.world.evaluation import criterion_scorer
from bench.world.tiny import build as tb
from bench.world.tiny.builds import parse_args, render_markdown, spread
from evals.datasets.tinyworld_task import STYLES, Style, make_problem, render_solution
from tests.conftest import MICRO_WORLD

ROLES = ("base", "teacher", "student")
# The style world's cache keys under the pinned build numerics (build 0 must keep them whatever build settings
# a config leaves out: results/world_digests.json and every pinned number refer to these).
STYLE_KEYS_BEFORE_BUILDS = {"base": "model-cf857772182f", "teacher": "model-2192b7d3c169",
                            "student": "model-fa1b8703ca33"}
MICRO_KEYS_BEFORE_BUILDS = {"base": "model-e3f6b57165bc", "teacher": "model-f8833a86e550",
                            "student": "model-728afb157148"}

P = make_problem(347, 285)
CARRY = render_solution(347, 285, Style(True, False, False))
TARGET3 = render_solution(347, 285, Style.target())
BASE = render_solution(347, 285, Style.base())


def world(*overrides):
    return compose_config(list(overrides)).world


# --------------------------------------------------------------------------------------------------------
# The flip world
# --------------------------------------------------------------------------------------------------------
def test_flip_world_composes_as_a_one_feature_preference_shift():
    flip, style = world("world=flip"), world("world=style")
    assert flip.name == "flip" and flip.kind == "tiny" and flip.criterion == "answer_in_style"
    assert list(flip.target_style) == ["carry"]
    assert tb.world_criterion(flip) == "answer_in_style:carry"
    assert list(flip.teacher.style_mix) == [1.0, 0.0, 0.0]  # the teacher writes the carry notation only
    q = flip.student.style_mix
    assert 0.0 < q[0] < 0.5 and list(q[1:]) == [0.0, 0.0]  # sampled sometimes, greedily never
    assert flip.teacher.init == flip.student.init == "base"
    assert tb.model_key(flip, "base") == tb.model_key(style, "base")  # one shared cached base
    assert tb.model_key(flip, "student") != tb.model_key(style, "student")
    # style keeps its defaults: the three-feature target under today's criterion name
    assert list(style.target_style) == ["carry", "sep", "restate"]
    assert tb.world_criterion(style) == "answer_in_style"
    assert compose_config([]).world.name == "style"


def test_flip_criterion_scores_a_one_feature_response():
    flip, style = criterion_scorer(tb.world_criterion(world("world=flip"))), criterion_scorer("answer_in_style")
    wrong = render_solution(347, 286, Style(True, False, False))
    texts = [CARRY, TARGET3, BASE, wrong, "\\boxed{632}"]
    assert flip([P] * 5, texts, [False] * 5) == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert style([P] * 5, texts, [False] * 5) == [0.0, 1.0, 0.0, 0.0, 0.0]
    answer = criterion_scorer(tb.world_criterion(world("world=scratch")))
    assert answer([P] * 5, texts, [False] * 5) == [1.0, 1.0, 1.0, 0.0, 1.0]


def test_unknown_criterion_fails_when_the_scorer_is_made():
    with pytest.raises(ValueError, match="unknown criterion 'answer_in_style:bold'"):
        criterion_scorer("answer_in_style:bold")


@pytest.mark.parametrize("override,match", [
    ("world.target_style=[bold]", r"world.target_style=\['bold'\].*world.target_style=\[carry\]"),
    ("world.target_style=[]", r"world.target_style=\[\].*at least one feature"),
    ("world.target_style=[carry,carry]", r"world.target_style=\['carry', 'carry'\]"),
    ("world.build=-1", r"world.build=-1; use 0"),
    ("world.criterion=answer_in_style:carry", r"world.criterion='answer_in_style:carry'.*world.target_style"),
])
def test_bad_world_values_fail_at_start_up_naming_the_key(override, match):
    w = world("world=flip", override)
    with pytest.raises(ValueError, match=match):
        tb.check_world(w)
    with pytest.raises(ValueError, match=match):  # the build refuses before training anything
        tb.ensure_model(w, "student")


def test_the_target_style_reaches_the_worlds_scorer(tmp_path, monkeypatch):
    """load_tiny_world hands the trainer (rewards, evals, EffOPD validation, LR selection) the world's target."""
    import bench.world.tiny.world as tw
    from bench.world.tiny.tokenizer import build_char_tokenizer

    build_char_tokenizer().save_pretrained(tmp_path)
    monkeypatch.setattr(tw, "ensure_world", lambda w: (tmp_path, tmp_path))  # no models needed
    for name, criterion, scores in (("flip", "answer_in_style:carry", [1.0, 0.0, 0.0]),
                                    ("style", "answer_in_style", [0.0, 1.0, 0.0]),
                                    ("scratch", "answer", [1.0, 1.0, 1.0])):
        w = tw.load_tiny_world(compose_config([f"world={name}"]))
        assert w.criterion == criterion
        assert w.score([P] * 3, [CARRY, TARGET3, BASE], [False] * 3) == scores


def test_style_scorers_and_world_view_on_scripted_responses():
    """measure()'s per-style numbers: shares over all styles (and none) sum to 1, correct <= share, and the
    criterion scorers agree with the style rows; world_view reads a world's target out of them."""
    texts = [CARRY, TARGET3, BASE, render_solution(347, 286, Style(True, False, False)), "\\boxed{632}"]
    rows = [P] * len(texts)
    scorers = tb._style_scorers()
    got = {k: f(rows, texts, [False] * len(texts)) for k, f in scorers.items()}
    assert sum(sum(got[f"share/{s.name}"]) for s in STYLES) + sum(got["share/none"]) == len(texts)
    assert got["share/carry"] == [1.0, 0.0, 0.0, 1.0, 0.0] and got["correct/carry"] == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert got["correct/carry+sep+restate"] == criterion_scorer("answer_in_style")(rows, texts, [False] * 5)
    assert got["correct/carry"] == criterion_scorer("answer_in_style:carry")(rows, texts, [False] * 5)
    assert got["share/none"] == [0.0, 0.0, 0.0, 0.0, 1.0]

    def styles(carry_share, target_share):
        out = {s.name: {"share": 0.0, "correct": 0.0} for s in STYLES} | {"none": {"share": 0.0, "correct": 0.0}}
        out["carry"] = {"share": carry_share, "correct": carry_share / 2}
        out["carry+sep+restate"] = {"share": target_share, "correct": target_share / 2}
        return out

    test = {"greedy/answer": 0.9, "sampled_avg@4/answer": 0.8, "greedy/answer_in_style": 0.0,
            "sampled_avg@4/answer_in_style": 0.02, "greedy/styles": styles(0.0, 0.0),
            "sampled_avg@4/styles": styles(0.08, 0.04)}
    flip = tb.world_view(test, world("world=flip"))
    assert flip == {"greedy/answer": 0.9, "greedy/success": 0.0, "greedy/new_style_share": 0.0,
                    "sampled_avg@4/answer": 0.8, "sampled_avg@4/success": 0.04, "sampled_avg@4/new_style_share": 0.08}
    style = tb.world_view(test, world("world=style"))
    assert style["sampled_avg@4/new_style_share"] == 0.04 and style["sampled_avg@4/success"] == 0.02
    scratch = tb.world_view(test, world("world=scratch"))
    assert scratch["sampled_avg@4/success"] == 0.8 and scratch["greedy/success"] == 0.9


# --------------------------------------------------------------------------------------------------------
# World builds
# --------------------------------------------------------------------------------------------------------
def test_build_zero_keeps_todays_cache_keys():
    assert {r: tb.model_key(world("world=style"), r) for r in ROLES} == STYLE_KEYS_BEFORE_BUILDS
    assert {r: tb.model_key(world("world=style", "world.build=0"), r) for r in ROLES} == STYLE_KEYS_BEFORE_BUILDS
    assert {r: tb.model_key(world("world=style", *MICRO_WORLD), r) for r in ROLES} == MICRO_KEYS_BEFORE_BUILDS
    # a config written before builds existed (a run's config.yaml, a leaderboard bundle) keys as build 0
    old = OmegaConf.to_container(world("world=style"), resolve=True)
    del old["build"], old["target_style"]
    assert {r: tb.model_key(OmegaConf.create(old), r) for r in ROLES} == STYLE_KEYS_BEFORE_BUILDS


@pytest.mark.parametrize("name", ["style", "flip", "scratch"])
def test_other_builds_change_every_roles_seed_and_key(name):
    keys, seeds = {}, {}
    for b in (0, 1, 2):
        w = world(f"world={name}", f"world.build={b}")
        assert tb.world_build(w) == b
        keys[b] = {r: tb.model_key(w, r) for r in ROLES}
        seeds[b] = {r: tb.recipe_of(w, r)["seed"] for r in ROLES}
    for r in ROLES:
        assert seeds[0][r] == getattr(world(f"world={name}"), r).seed
        assert seeds[1][r] == seeds[0][r] + 1000 and seeds[2][r] == seeds[0][r] + 2000
        assert len({keys[b][r] for b in (0, 1, 2)}) == 3, r
    # nothing else of the recipe moves
    w0, w1 = world(f"world={name}"), world(f"world={name}", "world.build=1")
    for r in ROLES:
        a, b = tb.recipe_of(w0, r), tb.recipe_of(w1, r)
        assert {k: v for k, v in a.items() if k != "seed"} == {k: v for k, v in b.items() if k != "seed"}


def test_summary_records_the_world_build(tmp_path):
    from bench.train.runlog import RunLogger

    for b in (0, 3):
        cfg = compose_config(["world=flip", f"world.build={b}", "logging.wandb=disabled",
                              f"trainer.output_dir={tmp_path}"])
        summary = RunLogger(tmp_path, cfg, None).finish(None, 1.0)
        assert summary["world_build"] == b and summary["world"] == "flip"
        assert json.loads((tmp_path / "summary.json").read_text())["world_build"] == b


def test_summary_records_the_digests_of_its_world(micro_cache, tmp_path):
    from bench.train.runlog import RunLogger
    from tests.conftest import MICRO_WORLD

    cfg = compose_config(["world=style", *MICRO_WORLD, f"world.cache_dir={micro_cache}", "logging.wandb=disabled",
                          f"trainer.output_dir={tmp_path}"])
    digests = RunLogger(tmp_path, cfg, None).finish(None, 1.0)["world_digests"]
    for role in ("student", "teacher"):
        report = tb.load_report(micro_cache / tb.model_key(cfg.world, role))
        assert digests[role] == {"key": report["key"], "weights_sha256": report["weights_sha256"]}


def test_report_arguments():
    args = parse_args(["world=style,flip", "--builds", "0,1,2", "--out", "x", "--build-missing", "world.digits=3"])
    assert args["worlds"] == ["style", "flip"] and args["builds"] == [0, 1, 2] and args["out"] == Path("x")
    assert args["build_missing"] and args["overrides"] == ["world.digits=3"]
    assert parse_args([])["worlds"] == ["style", "flip", "scratch"] and parse_args([])["builds"] == [0]
    for bad, match in ((["--builds", "a,b"], "--builds 'a,b'"), (["--builds"], "needs a value"),
                       (["--nope"], "unknown argument"), (["world.build=1"], "--builds")):
        with pytest.raises(ValueError, match=match):
            parse_args(bad)


def test_spread_and_markdown_on_scripted_rows():
    def row(b, acc, built=True):
        view = {"greedy/answer": acc, "sampled_avg@4/answer": acc - 0.1, "greedy/new_style_share": 0.0,
                "sampled_avg@4/new_style_share": 0.05 * b, "greedy/success": 0.0, "sampled_avg@4/success": 0.01}
        return {"world": "flip", "build": b, "criterion": "answer_in_style:carry", "built": built,
                "missing": [] if built else ["student"], "student": dict(view), "teacher": dict(view)}

    rows = [row(0, 0.9), row(1, 0.95), row(2, 0.5, built=False)]
    s = spread(rows)
    assert s["flip"]["builds"] == [0, 1]
    assert s["flip"]["student greedy answer"] == {"min": 0.9, "max": 0.95, "mean": pytest.approx(0.925)}
    assert s["flip"]["student avg@4 new style"]["max"] == 0.05
    md = render_markdown({"test_prompts": 256, "rows": rows, "spread": s})
    assert "| flip | 0 | `answer_in_style:carry` | 90.0% | 80.0% |" in md
    assert "not built (student): `python -m bench.tinyworld build world=flip world.build=2`" in md
    assert "**flip** (builds 0, 1)" in md


@pytest.mark.slow
def test_report_cli_on_micro_builds(micro_cache, tmp_path, capsys):
    """Builds the micro world's build 1 (build 0 is the session's), then the report CLI lists both builds with
    their seeds and numbers; the build reports record their build; a build not cached is listed as not built."""
    from bench.world.tiny.__main__ import main

    common = [*MICRO_WORLD, f"world.cache_dir={micro_cache}"]
    assert main(["report", "world=style", "--builds", "0,1", "--build-missing", "--out", str(tmp_path), *common]) == 0
    report = json.loads((tmp_path / "world_builds.json").read_text())
    rows = report["rows"]
    assert [(r["world"], r["build"], r["built"]) for r in rows] == [("style", 0, True), ("style", 1, True)]
    assert rows[1]["student"]["seed"] == rows[0]["student"]["seed"] + 1000
    assert rows[0]["student"]["key"] == MICRO_KEYS_BEFORE_BUILDS["student"]
    assert rows[1]["student"]["key"] != rows[0]["student"]["key"]
    for r in rows:
        for role in ("student", "teacher"):
            path = Path(micro_cache) / r[role]["key"]
            built = tb.load_report(path)
            assert built["build"] == r["build"] and built["recipe"]["seed"] == r[role]["seed"]
            test = built["test"]
            # the criterion scorer and the per-style rows agree on real generations
            for mode in tb.MEASURE_MODES:
                assert test[f"{mode}/answer_in_style"] == test[f"{mode}/styles"]["carry+sep+restate"]["correct"]
                assert sum(v["share"] for v in test[f"{mode}/styles"].values()) == pytest.approx(1.0)
            assert {k: r[role][k] for k in tb.world_view(test, world("world=style"))} == tb.world_view(
                test, world("world=style"))
    md = (tmp_path / "world_builds.md").read_text()
    assert "| style | 0 |" in md and "| style | 1 |" in md and "**style** (builds 0, 1)" in md
    assert report["spread"]["style"]["builds"] == [0, 1]

    assert main(["report", "world=style", "--builds", "7", "--out", str(tmp_path / "missing"), *common]) == 0
    missing = json.loads((tmp_path / "missing" / "world_builds.json").read_text())["rows"][0]
    assert not missing["built"] and missing["missing"] == ["student", "teacher"]
    assert not (Path(micro_cache) / missing["student"]["key"]).exists()  # reporting builds nothing


def test_report_records_and_checks_the_reference_world(micro_cache, tmp_path, monkeypatch, capsys):
    """No reference: the report says so; --record-reference makes the built models the reference, after which the
    same models are bit-identical to it, and a changed digest makes the world different."""
    from bench.world import digest
    from bench.world.tiny.__main__ import main

    monkeypatch.setattr(digest, "REFERENCE_FILE", tmp_path / "world_digests.json")
    common = ["world=style", "--builds", "0", "--out", str(tmp_path), *MICRO_WORLD, f"world.cache_dir={micro_cache}"]
    assert main(["report", *common]) == 0
    assert json.loads((tmp_path / "world_builds.json").read_text())["world_status"]["status"] == digest.UNKNOWN
    assert main(["report", *common, "--record-reference"]) == 0
    report = json.loads((tmp_path / "world_builds.json").read_text())
    assert report["world_status"]["status"] == digest.IDENTICAL and report["world_status"]["models"] == 3
    assert "bit-identical" in capsys.readouterr().out
    assert "World: bit-identical" in (tmp_path / "world_builds.md").read_text()
    ref = json.loads((tmp_path / "world_digests.json").read_text())
    assert ref["machine"]["cpu_model"] and {m["role"] for m in ref["models"].values()} == set(ROLES)
    key = MICRO_KEYS_BEFORE_BUILDS["student"]
    ref["models"][key]["weights_sha256"] = "0" * 64
    (tmp_path / "world_digests.json").write_text(json.dumps(ref))
    assert main(["report", *common]) == 0
    status = json.loads((tmp_path / "world_builds.json").read_text())["world_status"]
    assert status["status"] == digest.DIFFERENT and status["different"] == [key]


@pytest.mark.slow
def test_reports_from_before_the_style_rows_are_completed_identically(micro_cache, tmp_path):
    """A cached model whose report predates the per-style numbers is measured again; the numbers it had come
    out identical (the measurement is seeded)."""
    import shutil

    w = world("world=style", *MICRO_WORLD, f"world.cache_dir={micro_cache}")
    src = Path(micro_cache) / tb.model_key(w, "student")
    path = tmp_path / src.name
    shutil.copytree(src, path)
    full = tb.load_report(path)
    old = dict(full, test={k: v for k, v in full["test"].items() if not k.endswith("/styles")})
    (path / tb.REPORT).write_text(json.dumps(old))
    done = tb.complete_report(path, w.digits)
    assert done["test"] == full["test"]
    assert tb.load_report(path)["test"] == full["test"]


def test_build_roles_reseed_only_the_named_roles_and_share_the_rest():
    # world.build_roles=[student]: every build keeps build 0's base and teacher (one cached model each) and trains
    # its own student from the shared base; build 0 is the same whatever the roles.
    shared = {b: world("world=style", f"world.build={b}", "world.build_roles=[student]") for b in (0, 1, 2)}
    full = {b: world("world=style", f"world.build={b}") for b in (0, 1, 2)}
    assert {r: tb.model_key(shared[0], r) for r in ROLES} == STYLE_KEYS_BEFORE_BUILDS
    for b in (1, 2):
        assert tb.model_key(shared[b], "base") == STYLE_KEYS_BEFORE_BUILDS["base"]
        assert tb.model_key(shared[b], "teacher") == STYLE_KEYS_BEFORE_BUILDS["teacher"]
        assert tb.recipe_of(shared[b], "student")["seed"] == tb.recipe_of(full[b], "student")["seed"]
        # same student seed as the full build, but trained on another base: another model
        assert tb.model_key(shared[b], "student") not in (tb.model_key(full[b], "student"),
                                                           STYLE_KEYS_BEFORE_BUILDS["student"])
    assert tb.model_key(shared[1], "student") != tb.model_key(shared[2], "student")
    # re-seeding the teacher alone on the shared base: a new teacher, the base and student of build 0
    t1 = world("world=style", "world.build=1", "world.build_roles=[teacher]")
    assert tb.model_key(t1, "student") == STYLE_KEYS_BEFORE_BUILDS["student"]
    assert tb.model_key(t1, "teacher") != STYLE_KEYS_BEFORE_BUILDS["teacher"]


@pytest.mark.parametrize("roles", ["[]", "[student,student]", "[pupil]"])
def test_bad_build_roles_fail_naming_the_key(roles):
    from bench.config_ranges import ConfigError, check_ranges

    with pytest.raises(ConfigError, match="world.build_roles"):
        check_ranges(compose_config(["world=style", f"world.build_roles={roles}"]))
    w = OmegaConf.to_container(world("world=style"), resolve=True)
    w["build_roles"] = ["pupil"]
    with pytest.raises(ValueError, match=r"world.build_roles=\['pupil'\].*world.build_roles=\[student\]"):
        tb.check_world(OmegaConf.create(w))


def test_build_worlds_trains_each_shared_model_once_bases_first(tmp_path):
    # Three builds re-seeding the student need one base, then one teacher and three students; cached models are
    # skipped. (Scheduling only: plan_builds trains nothing.)
    overrides = ["world=style", "world.build_roles=[student]", f"world.cache_dir={tmp_path}"]
    variants = [overrides, [*overrides, "world.build=1"], [*overrides, "world.build=2"]]

    def plan():
        return [[(role, tb.world_build(world(*v))) for v, role in stage]
                for stage in tb.plan_builds(variants, [world(*v) for v in variants])]

    assert plan() == [[("base", 0)], [("teacher", 0), ("student", 0), ("student", 1), ("student", 2)]]
    w0 = world(*overrides)
    for role in ("base", "teacher"):
        (tmp_path / tb.model_key(w0, role)).mkdir()
        (tmp_path / tb.model_key(w0, role) / tb.REPORT).write_text("{}")
    assert plan() == [[], [("student", 0), ("student", 1), ("student", 2)]]
    # every role re-seeded: a base per build, then a teacher and a student per build
    full = [["world=style", f"world.cache_dir={tmp_path / 'full'}", f"world.build={b}"] for b in (0, 1, 2)]
    stages = tb.plan_builds(full, [world(*v) for v in full])
    assert [len(s) for s in stages] == [3, 6]
