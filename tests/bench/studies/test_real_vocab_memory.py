"""The real-vocabulary memory benchmark (bench/studies/perf/real_vocab_memory.py) on a micro shape."""

from __future__ import annotations

import json

import pytest

from bench.studies.perf import real_vocab_memory as rv

MICRO = ["--batch", "2", "--seq-len", "40", "--prompt-len", "8", "--vocab", "500", "--hidden", "64", "--layers", "1",
         "--steps", "2", "--threads", "1", "--chunk", "8,4"]


def test_cli_rejects_bad_shapes():
    for argv in (["--prompt-len", "1024"], ["--steps", "1"], ["--sides", "ours,theirs"], ["--vocab", "3"],
                 ["--batch", "0"], ["--chunk", "0"], ["--chunk", "a"]):
        with pytest.raises(SystemExit):
            rv.parse_args(argv)
    assert rv.parse_args(["--sides", "trl"]).side_list == ["trl"]
    assert rv.parse_args([]).side_list == ["ours_chunk128", "ours_chunk32", "ours_plain", "trl"]


def test_tokenizer_has_the_exact_vocabulary_and_one_token_per_word():
    tok = rv.make_tokenizer(1000)
    assert len(tok) == 1000 and tok.eos_token_id == 2 and tok.pad_token_id == 1
    args = rv.parse_args(MICRO)
    (prompt,) = rv.prompts(args, 1)
    assert len(tok(prompt, add_special_tokens=False)["input_ids"]) == args.prompt_len
    assert rv.prompts(args, 3) == rv.prompts(args, 3)  # seeded


def _side(peak_gib, sps, baseline_gib=0.5, status="ok", estimate=None):
    gib = rv.GIB
    r = {"status": status, "peak_rss": peak_gib * gib, "baseline_rss": baseline_gib * gib, "step_seconds": [9.0]
         + [1 / sps] * 2, "generated_tokens": [64, 64, 64], "watchdog_max_rss": peak_gib * gib}
    if estimate is not None:
        r["dry_run_estimate_gib"] = {"total": estimate}
    return r


def test_report_goals_and_dry_run_check():
    args = rv.parse_args(MICRO)
    sides = {name: rv.summarize(r, args) for name, r in (
        ("ours_chunk8", _side(3.0, 0.5, estimate=2.0)), ("ours_chunk4", _side(6.0, 0.5, estimate=5.5)),
        ("ours_plain", _side(12.0, 0.4, estimate=11.0)), ("trl", _side(15.0, 0.25)))}
    report = rv.build_report(args, sides, {"cpu": "test"})
    goals = report["goals"]
    assert set(goals) == {"ours_chunk8", "ours_chunk4"}  # the plain path is not a candidate for the goal
    assert goals["ours_chunk8"]["peak_ratio_over_trl"] == 0.2 and goals["ours_chunk8"]["memory_goal_met (<= 1/3)"]
    assert not goals["ours_chunk4"]["memory_goal_met (<= 1/3)"]
    assert goals["ours_chunk8"]["speed_ratio_over_trl"] == 2.0
    check = report["dry_run_check"]
    assert check["ours_chunk8"]["ratio"] == 0.8 and check["ours_chunk8"]["within_20pct"]  # 2.0 / 2.5 above baseline
    assert check["ours_chunk4"]["within_20pct"] and not check["ours_plain"]["ratio"] > 1
    # a TRL side stopped by the watchdog: its peak is a lower bound, the speed goal is not judged
    sides["trl"] = {"side": "trl", "status": "over_cap", "watchdog_max_rss": 20 * rv.GIB, "watchdog_max_rss_gib": 20}
    report = rv.build_report(args, sides, {})
    assert goals["ours_chunk8"] and report["goals"]["ours_chunk8"]["trl_peak_is_a_lower_bound"]
    assert "speed_ratio_over_trl" not in report["goals"]["ours_chunk8"]
    assert "over_cap" in rv.render_markdown(report)


@pytest.mark.slow
def test_micro_run_of_our_two_sides(tmp_path):
    rv.main([*MICRO, "--sides", "ours_chunked,ours_plain", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "real_vocab_memory.json").read_text())
    for side in ("ours_chunk8", "ours_chunk4", "ours_plain"):
        r = report["sides"][side]
        assert r["status"] == "ok" and r["peak_rss"] > r["baseline_rss"] > 0 and r["steps_per_s"] > 0
        assert len(r["loss"]) == 2 and r["mean_generated_tokens_per_sequence"] <= 32
    assert set(report["dry_run_check"]) == {"ours_chunk8", "ours_chunk4", "ours_plain"}
    # the same seeds and data: the chunked and the plain log-probs train the same way
    assert report["sides"]["ours_chunk8"]["loss"] == pytest.approx(report["sides"]["ours_plain"]["loss"], abs=1e-4)
    assert (tmp_path / "real_vocab_memory.md").read_text().startswith("# OPD step at a real vocabulary")


def test_watchdog_reads_a_process_tree_from_proc():
    import os
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(200 * 2**20); time.sleep(30)"])
    try:
        import time

        deadline = time.time() + 10
        while rv.child_rss(child.pid) < 200 * 2**20 and time.time() < deadline:
            time.sleep(0.05)
        assert rv.child_rss(child.pid) >= 200 * 2**20  # the child's bytearray is resident
        assert rv.child_rss(os.getpid()) > rv.child_rss(child.pid)  # this process counts its child too
    finally:
        child.kill()
        child.wait()
    assert rv.child_rss(child.pid) == 0  # gone
