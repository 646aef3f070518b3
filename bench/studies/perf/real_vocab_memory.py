"""Memory and speed of an OPD step at a real vocabulary (151,936 tokens), ours vs TRL's DistillationTrainer, on CPU.

    python -m bench.studies.perf.real_vocab_memory [--batch 8] [--seq-len 1024] [--prompt-len 64] [--hidden 256]
        [--layers 2] [--steps 3] [--threads 2] [--chunk 128,32] [--mem-cap-gib 20] [--sides ours_chunked,ours_plain,trl]

At paper scale the logits dominate memory: one fp32 ``[B, L, 152k]`` tensor is 5 GB at 8 x 1024 tokens. The
models are random-weight Qwen3s (student and teacher, different seeds) with Qwen3's vocabulary size and a few
small layers, so the logits are the real ones and the rest fits a laptop; the tokenizer is a word-level one of
that size (memory depends on the vocabulary's size, not its words, and the real one is on the hub). An OPD step
is ``--batch`` prompts of ``--prompt-len`` tokens, each sampled to ``--seq-len`` tokens in all (a random model
practically never samples EOS, so every row is full length), scored by the teacher and trained on.

Sides, each in its own process (peak resident memory = the process's ``ru_maxrss``):

- ``ours_chunk<N>`` (``ours_chunked`` in ``--sides``: one side per ``--chunk`` value): our trainer's own step
  (``bench.train.loop.train_step`` on ``setup``'s parts) with ``trainer.logprob_chunk=N``: fp32 logits for N
  positions at a time;
- ``ours_plain``: the same with ``trainer.logprob_chunk=0`` (whole-response logits);
- ``trl``: ``trl.DistillationTrainer`` (TRL 1.16, ``beta=1``: reverse KL, the OPD objective; CPU-hostile defaults
  off as in the speed comparison), the same models, prompts and batch.

A watchdog stops a side whose resident memory crosses ``--mem-cap-gib`` (the machines have 24 GB; past the cap
the kernel would start killing processes): it is reported as over the cap, with the most it was seen using.
Steps/s is over the steps after the first (first-call allocations). The dry run's memory estimate
(``bench.train.dry_run.estimate_memory``) at this shape is compared with our measured peak above the process's
baseline (resident memory after imports, before any model loads). Writes ``<out>/real_vocab_memory.json`` and
``.md``. Needs the benchmark extra for the TRL side (``pip install -e '.[bench]'``, ``make bench``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.paths import RESULTS_DIR

QWEN3_VOCAB = 151_936
SIDES = ("ours_chunked", "ours_plain", "trl")  # ours_chunked: one ours_chunk<N> side per --chunk value
GIB = 1024**3
RESULT_PREFIX = "REAL_VOCAB_RESULT "
SPECIAL = ("<unk>", "<pad>", "<eos>")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.studies.perf.real_vocab_memory",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8, help="sequences per OPD step (default 8)")
    ap.add_argument("--seq-len", type=int, default=1024, help="tokens per sequence, prompt included (default 1024)")
    ap.add_argument("--prompt-len", type=int, default=64, help="prompt tokens per sequence (default 64)")
    ap.add_argument("--vocab", type=int, default=QWEN3_VOCAB, help=f"vocabulary size (default {QWEN3_VOCAB}: Qwen3)")
    ap.add_argument("--hidden", type=int, default=256, help="hidden size of the random models (default 256)")
    ap.add_argument("--layers", type=int, default=2, help="decoder layers (default 2)")
    ap.add_argument("--steps", type=int, default=3, help="OPD steps per side (default 3; steps/s skips the first)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per side (default 2)")
    ap.add_argument("--chunk", default="128,32",
                    help="trainer.logprob_chunk of the ours_chunked sides, comma-separated (default 128,32)")
    ap.add_argument("--mem-cap-gib", type=float, default=20.0, help="stop a side above this RSS (default 20)")
    ap.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated, from {','.join(SIDES)}")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "perf", help="output folder (default results/perf)")
    ap.add_argument("--side", help=argparse.SUPPRESS)  # internal: run one side (its expanded name) in this process
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        args.chunks = [int(c) for c in str(args.chunk).split(",") if c.strip()]
    except ValueError:
        ap.error(f"--chunk {args.chunk!r}: give positions per chunk, comma-separated (e.g. 128,32)")
    if not args.chunks or min(args.chunks) < 1:
        ap.error(f"--chunk {args.chunk!r}: every chunk must be >= 1")
    for name in ("batch", "seq_len", "prompt_len", "vocab", "hidden", "layers", "steps", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.prompt_len >= args.seq_len:
        ap.error(f"--prompt-len {args.prompt_len} must be below --seq-len {args.seq_len} (the rest is sampled)")
    if args.vocab <= len(SPECIAL):
        ap.error(f"--vocab {args.vocab} must exceed the {len(SPECIAL)} special tokens")
    if args.steps < 2:
        ap.error("--steps must be >= 2: steps/s is measured over the steps after the first")
    named = [s.strip() for s in args.sides.split(",") if s.strip()]
    bad = [s for s in named if s not in SIDES]
    if bad or not named:
        ap.error(f"--sides {args.sides!r}: choose from {', '.join(SIDES)}")
    args.side_list = [x for s in named for x in ([f"ours_chunk{c}" for c in args.chunks] if s == "ours_chunked"
                                                 else [s])]
    return args


# ------------------------------------------------------------------------------------------------------------
# The models, tokenizer and prompts (made once, in the parent)
# ------------------------------------------------------------------------------------------------------------
def make_tokenizer(vocab: int):
    """A word-level tokenizer of exactly ``vocab`` tokens: ``<unk> <pad> <eos> w3 w4 ...``, whitespace-split."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {t: i for i, t in enumerate(SPECIAL)} | {f"w{i}": i for i in range(len(SPECIAL), vocab)}
    core = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>",
                                   padding_side="left")


def arch(args):
    """The random models' shape (the tiny world's ``ArchConfig``): 64-wide heads, half as many KV heads."""
    from bench.config import ArchConfig

    heads = max(1, args.hidden // 64)
    return ArchConfig(hidden_size=args.hidden, intermediate_size=3 * args.hidden, num_hidden_layers=args.layers,
                      num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), head_dim=64,
                      max_position_embeddings=args.seq_len)


def make_models(args, workdir: Path) -> dict[str, Path]:
    """Random-weight student (seed 0) and teacher (seed 1), each saved with the tokenizer; built as the tiny
    world builds its models (``new_model``), at this vocabulary."""
    import torch

    from bench.world.tiny.build import new_model

    tok = make_tokenizer(args.vocab)
    paths = {}
    for seed, role in enumerate(("student", "teacher")):
        torch.manual_seed(seed)
        model = new_model(arch(args), tok)
        paths[role] = workdir / role
        model.save_pretrained(paths[role])
        tok.save_pretrained(paths[role])
        del model
    return paths


def prompts(args, n: int) -> list[str]:
    """``n`` prompts of exactly ``--prompt-len`` random words (one token each), fixed by a seed."""
    import random

    rng = random.Random(0)
    return [" ".join(f"w{rng.randrange(len(SPECIAL), args.vocab)}" for _ in range(args.prompt_len)) for _ in range(n)]


# ------------------------------------------------------------------------------------------------------------
# One side, in its own process
# ------------------------------------------------------------------------------------------------------------
def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def our_overrides(args, chunk: int, workdir: Path) -> list[str]:
    return ["experiment=opd", "world.kind=hub", f"world.student_path={workdir / 'student'}",
            f"world.teacher_path={workdir / 'teacher'}", f"trainer.prompts_per_step={args.batch}",
            f"trainer.micro_batch_size={args.batch}", f"trainer.total_steps={args.steps}",
            f"rollout.max_new_tokens={args.seq_len - args.prompt_len}", "rollout.engine=qwen3_fast",
            f"trainer.logprob_chunk={chunk}", f"trainer.threads={args.threads}", "trainer.straightness=false",
            "effopd.probe_when_disabled=false", "logging.wandb=disabled", "logging.progress_bar=false",
            f"trainer.output_dir={workdir / f'ours-chunk{chunk}'}"]


def synthetic_world(args, workdir: Path):
    """A ``World`` over the random models: the step's prompts and a zero task reward (OPD trains on the
    teacher's log-probs; the reward is only logged)."""
    from transformers import AutoTokenizer

    from bench.world import World
    from bench.world.hub import Prompt

    tok = AutoTokenizer.from_pretrained(workdir / "student")
    tok.padding_side = "left"
    train = [Prompt(f"p{i}", p, "") for i, p in enumerate(prompts(args, args.batch * args.steps))]
    return World(student_path=str(workdir / "student"), teacher_path=str(workdir / "teacher"), tokenizer=tok,
                 criterion="none", train=train, test=[], effopd_val=[], selection=[],
                 score=lambda rows, texts, truncated: [0.0] * len(rows))


def run_ours(args, chunk: int, workdir: Path) -> dict:
    from bench.config import compose_config
    from bench.train.dry_run import estimate_memory
    from bench.train.loop import Progress, train_step
    from bench.train.setup import setup

    cfg = compose_config(our_overrides(args, chunk, workdir))
    baseline = rss_bytes()
    run = setup(cfg, world=synthetic_world(args, workdir))
    loaded = rss_bytes()
    progress, records = Progress(), []
    for _ in range(args.steps):
        record, _ = train_step(run, progress)
        records.append(record)
    keys = [k for k in records[0] if k.startswith("time/")]
    step_seconds = [sum(r[k] for k in keys) for r in records]
    tokens = [r.get("generated_tokens", 0) for r in records]
    student_cfg = run.student.config
    params = sum(p.numel() for p in run.student.parameters())  # tied embeddings counted once
    estimate = estimate_memory(cfg, student_cfg, params, params, 1, prompt_tokens=args.prompt_len)
    return {"step_seconds": step_seconds, "generated_tokens": tokens, "baseline_rss": baseline,
            "loaded_rss": loaded, "time_split": {k.removeprefix("time/"): sum(r[k] for r in records) for k in keys},
            "loss": [r["loss"] for r in records], "dry_run_estimate_gib": estimate, "parameters": params,
            "logprob_chunk": chunk}


def run_trl(args, workdir: Path) -> dict:
    from bench.studies.perf.deps import require_trl

    trl = require_trl()
    from datasets import Dataset
    from transformers import AutoTokenizer
    from transformers.trainer_callback import PrinterCallback

    from bench.studies.perf.trl_timing import StepTimer
    from bench.world import load_model

    baseline = rss_bytes()
    tok = AutoTokenizer.from_pretrained(workdir / "student")
    tok.padding_side = "left"
    student = load_model(workdir / "student", trainable=True)
    teacher = load_model(workdir / "teacher", trainable=False)
    kwargs = trl_kwargs(args)
    config = trl.DistillationConfig(output_dir=str(workdir / "trl"), **kwargs)
    data = Dataset.from_dict({"prompt": prompts(args, args.batch * args.steps)})
    trainer = trl.DistillationTrainer(model=student, teacher_model=teacher, args=config, train_dataset=data,
                                      processing_class=tok)
    trainer.remove_callback(PrinterCallback)
    timer = StepTimer()
    trainer.add_callback(timer)
    loaded = rss_bytes()
    trainer.train()
    history = trainer.state.log_history
    lengths = [h["completions/mean_length"] for h in history if h.get("completions/mean_length") is not None]
    return {"step_seconds": timer.step_seconds, "baseline_rss": baseline, "loaded_rss": loaded,
            "generated_tokens": [round(x * args.batch) for x in lengths],
            "loss": [h["loss"] for h in history if "loss" in h], "trl_settings": kwargs}


def trl_kwargs(args) -> dict:
    """DistillationConfig settings: the OPD objective (beta=1: reverse KL, on-policy), our batch and sampling,
    the CPU-hostile defaults off (bench/studies/perf/trl_settings.py says why)."""
    return {"use_cpu": True, "bf16": False, "fp16": False, "activation_checkpointing": False, "report_to": "none",
            "logging_steps": 1, "disable_tqdm": True, "save_strategy": "no", "dataloader_pin_memory": False,
            "max_steps": args.steps, "per_device_train_batch_size": args.batch, "gradient_accumulation_steps": 1,
            "optim": "adamw_torch", "learning_rate": 2e-5, "lr_scheduler_type": "constant", "warmup_steps": 0,
            "max_grad_norm": 1.0, "seed": 0, "shuffle_dataset": False, "beta": 1.0,
            "max_completion_length": args.seq_len - args.prompt_len, "temperature": 1.0, "top_p": 1.0, "top_k": 0,
            "use_vllm": False}


def side_main(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    out = run_trl(args, args.workdir) if args.side == "trl" else run_ours(
        args, int(args.side.removeprefix("ours_chunk")) if args.side.startswith("ours_chunk") else 0, args.workdir)
    out |= {"side": args.side, "peak_rss": peak_rss_bytes(), "wall_seconds": time.perf_counter() - t0,
            "threads": torch.get_num_threads()}
    print(RESULT_PREFIX + json.dumps(out), flush=True)


# ------------------------------------------------------------------------------------------------------------
# The parent: every side under a memory watchdog, then the report
# ------------------------------------------------------------------------------------------------------------
def child_rss(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants (a side that forks counts whole), from /proc: the watchdog
    needs no extra package (Linux only, as is ``ru_maxrss`` in KiB)."""
    total, todo, seen = 0, [pid], set()
    page = os.sysconf("SC_PAGE_SIZE")
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * page
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue  # exited between the listing and the read
    return total


def run_side(args, side: str, workdir: Path, log=print) -> dict:
    cmd = [sys.executable, "-m", "bench.studies.perf.real_vocab_memory", "--side", side, "--workdir", str(workdir),
           *child_args(args)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false"}
    cap = int(args.mem_cap_gib * GIB)
    seen, over = 0, False
    with tempfile.TemporaryFile("w+") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, text=True)
        while proc.poll() is None:
            seen = max(seen, child_rss(proc.pid))
            if seen > cap:
                over = True
                proc.kill()
                proc.wait()
                break
            time.sleep(0.05)
        logf.seek(0)
        output = logf.read()
    lines = [ln for ln in output.splitlines() if ln.startswith(RESULT_PREFIX)]
    if lines:
        result = json.loads(lines[-1][len(RESULT_PREFIX):])
        result |= {"status": "ok", "watchdog_max_rss": seen}
        return summarize(result, args)
    status = "over_cap" if over else f"failed (exit {proc.returncode})"
    log(f"[{side}] {status}; last output:\n" + "\n".join(output.splitlines()[-15:]))
    return {"side": side, "status": status, "watchdog_max_rss": seen,
            "watchdog_max_rss_gib": round(seen / GIB, 2), "cap_gib": args.mem_cap_gib,
            "output_tail": output.splitlines()[-15:]}


def child_args(args) -> list[str]:
    return [f"--batch={args.batch}", f"--seq-len={args.seq_len}", f"--prompt-len={args.prompt_len}",
            f"--vocab={args.vocab}", f"--hidden={args.hidden}", f"--layers={args.layers}", f"--steps={args.steps}",
            f"--threads={args.threads}", f"--chunk={args.chunk}"]


def summarize(result: dict, args) -> dict:
    """Derived numbers of a finished side: GiB, steps/s after the first step, tokens per sequence."""
    steps = result["step_seconds"]
    steady = steps[1:]
    result["peak_rss_gib"] = round(result["peak_rss"] / GIB, 3)
    result["peak_above_baseline_gib"] = round((result["peak_rss"] - result["baseline_rss"]) / GIB, 3)
    result["steps_per_s"] = len(steady) / sum(steady) if sum(steady) > 0 else None
    result["mean_generated_tokens_per_sequence"] = (sum(result["generated_tokens"]) / (args.batch * len(steps))
                                                    if result.get("generated_tokens") else None)
    return result


def build_report(args, sides: dict[str, dict], machine: dict) -> dict:
    report = {"shape": {"batch": args.batch, "seq_len": args.seq_len, "prompt_len": args.prompt_len,
                        "new_tokens": args.seq_len - args.prompt_len, "vocab": args.vocab},
              "models": {"hidden": args.hidden, "layers": args.layers, "weights": "random (student seed 0, teacher 1)",
                         "dtype": "fp32"},
              "steps": args.steps, "threads": args.threads, "chunks": args.chunks, "mem_cap_gib": args.mem_cap_gib,
              "machine": machine, "sides": sides}
    trl = sides.get("trl")
    ok = {k: v for k, v in sides.items() if v.get("status") == "ok"}
    goals = {}
    for name, ours in ok.items():
        if not name.startswith("ours_chunk") or not trl:
            continue
        trl_peak = trl["peak_rss"] if trl.get("status") == "ok" else trl["watchdog_max_rss"]
        g = {"peak_ratio_over_trl": round(ours["peak_rss"] / trl_peak, 3),
             "trl_peak_is_a_lower_bound": trl.get("status") != "ok",
             "memory_goal_met (<= 1/3)": ours["peak_rss"] * 3 <= trl_peak}
        if trl.get("status") == "ok" and trl["steps_per_s"] and ours["steps_per_s"]:
            g["speed_ratio_over_trl"] = round(ours["steps_per_s"] / trl["steps_per_s"], 3)
            g["speed_goal_met (>= 1)"] = ours["steps_per_s"] >= trl["steps_per_s"]
        goals[name] = g
    report["goals"] = goals
    report["dry_run_check"] = {
        side: {"estimate_total_gib": r["dry_run_estimate_gib"]["total"], "estimate": r["dry_run_estimate_gib"],
               "measured_above_baseline_gib": r["peak_above_baseline_gib"],
               "ratio": round(r["dry_run_estimate_gib"]["total"] / r["peak_above_baseline_gib"], 3),
               "within_20pct": abs(r["dry_run_estimate_gib"]["total"] / r["peak_above_baseline_gib"] - 1) <= 0.2}
        for side, r in ok.items() if "dry_run_estimate_gib" in r}
    return report


def render_markdown(report: dict) -> str:
    s = report["shape"]
    lines = ["# OPD step at a real vocabulary: ours vs TRL (CPU)", "",
             f"{s['batch']} x {s['seq_len']} tokens ({s['prompt_len']}-token prompts, {s['new_tokens']} sampled), "
             f"vocabulary {s['vocab']:,}; random Qwen3 student and teacher, hidden {report['models']['hidden']}, "
             f"{report['models']['layers']} layers, fp32; {report['threads']} threads; {report['steps']} steps per "
             f"side (steps/s over all but the first); memory cap {report['mem_cap_gib']} GiB.", "",
             "| side | status | peak RSS (GiB) | above baseline (GiB) | steps/s | s/step |",
             "|---|---|---|---|---|---|"]
    for name, r in report["sides"].items():
        if r.get("status") == "ok":
            sps = r["steps_per_s"]
            lines.append(f"| {name} | ok | {r['peak_rss_gib']:.2f} | {r['peak_above_baseline_gib']:.2f} | "
                         f"{sps:.4f} | {1 / sps:.2f} |")
        else:
            lines.append(f"| {name} | {r['status']} | > {r['watchdog_max_rss_gib']:.2f} (stopped) | | | |")
    for name, g in report["goals"].items():
        lines += ["", f"Goals, {name} vs trl: " + "; ".join(f"{k}: {v}" for k, v in g.items())]
    for side, d in report["dry_run_check"].items():
        lines += ["", f"Dry-run estimate for {side}: {d['estimate_total_gib']} GiB ({d['estimate']}) vs measured "
                      f"{d['measured_above_baseline_gib']} GiB above the process baseline (ratio {d['ratio']})."]
    m = report["machine"]
    lines += ["", f"Machine: {m.get('cpu', '?')}, {m.get('cpus', '?')} CPUs, torch {m.get('torch_version', '?')}, "
                  f"TRL {m.get('trl_version') or 'not installed'}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.side:
        side_main(args)
        return
    from bench.studies.perf.report import machine_info
    from core.io import atomic_write_json, atomic_write_text

    machine = machine_info(args.threads)
    with tempfile.TemporaryDirectory(prefix="real-vocab-") as tmp:
        workdir = Path(tmp)
        make_models(args, workdir)
        sides = {}
        for side in args.side_list:
            print(f"[{side}] running ...", file=sys.stderr, flush=True)
            sides[side] = run_side(args, side, workdir, log=lambda m: print(m, file=sys.stderr))
            r = sides[side]
            print(f"[{side}] {r['status']}: peak {r.get('peak_rss_gib', r.get('watchdog_max_rss_gib'))} GiB, "
                  f"steps/s {r.get('steps_per_s')}", file=sys.stderr, flush=True)
    report = build_report(args, sides, machine)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "real_vocab_memory.json", report)
    atomic_write_text(args.out / "real_vocab_memory.md", render_markdown(report))
    print(render_markdown(report))


if __name__ == "__main__":
    main()
