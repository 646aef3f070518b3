"""Score a checkpoint on a benchmark: ``python -m evals.run model=<folder or hub id> benchmark=aime24 n=32``.

Top to bottom: load the benchmark and the model, generate every unfinished chunk of problems (appending its
graded samples to ``samples.jsonl`` as soon as the chunk is done, so an interrupted eval resumes where it
stopped), then summarise all samples into ``summary.json`` (metrics plus the full protocol).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from core.config_diff import ConfigChanged, check_unchanged
from core.io import append_jsonl, atomic_write_json, read_jsonl, resume_jsonl
from core.paths import REPO_ROOT
from core.rollout import SamplingParams, make_engine
from core.run_lock import FolderInUse, folder_lock
from evals.config import EvalConfig, register_eval_config
from evals.datasets import get_benchmark, load_benchmark, template_hash
from evals.generation import CHUNK_SEED_STRIDE, build_prompt, chunks, generate_chunk, load_policy, use_chat_template
from evals.graders.code.sandbox import ISOLATIONS
from evals.grading import Grader, grader_info
from evals.metrics import summarize
from evals.protocol import git_commit, machine, model_fingerprint, package_versions


def default_output_dir(cfg) -> Path:
    name = Path(cfg.model).name if Path(cfg.model).expanduser().exists() else cfg.model.replace("/", "__")
    return REPO_ROOT / "runs" / "evals" / cfg.benchmark / name


def check_config(cfg) -> None:
    if cfg.n < 1:
        raise ValueError(f"n={cfg.n}; must be >= 1 sample per problem")
    if not 0 <= cfg.k <= cfg.n:
        raise ValueError(f"k={cfg.k}; must be between 1 and n={cfg.n} (0 means k = n)")
    if cfg.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={cfg.max_new_tokens}; must be >= 1")
    if cfg.sandbox not in ISOLATIONS:
        raise ValueError(f"sandbox={cfg.sandbox!r}; use one of {ISOLATIONS} ('auto': namespaces, refusing without "
                         "them; 'unsafe-rlimits': no containment, trusted code only)")
    if cfg.limit < 0:
        raise ValueError(f"limit={cfg.limit}; use 0 for all problems or a positive count")
    known = set(EvalConfig.__dataclass_fields__)
    for name in cfg.resume_may_change:
        if name not in known:
            raise ValueError(f"resume_may_change names {name!r}, which is not an eval config key (e.g. temperature)")


def protocol(cfg, loaded, grader: Grader, chat: bool, prompt_example: str) -> dict:
    """Everything that decides the numbers: two summaries are comparable when these agree."""
    bench = loaded.benchmark
    return {
        "model": cfg.model, "revision": cfg.revision, "model_fingerprint": model_fingerprint(cfg.model),
        "benchmark": bench.name, "dataset_source": loaded.source, "dataset_sha256": loaded.sha256,
        "num_problems": len(loaded.examples), "limit": cfg.limit,
        "prompt_template": bench.template, "prompt_template_hash": template_hash(bench.template),
        "chat_template": chat, "enable_thinking": cfg.enable_thinking,
        "chat_template_hash": hashlib.sha256(prompt_example.encode()).hexdigest()[:16],
        "sampling": {"n": cfg.n, "temperature": cfg.temperature, "top_p": cfg.top_p,
                     "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed, "batch_prompts": cfg.batch_prompts,
                     "chunk_seed": f"seed * {CHUNK_SEED_STRIDE} + chunk index"},
        "engine": cfg.engine, "dtype": cfg.dtype, "device": cfg.device,
        "grader": grader_info(grader), "packages": package_versions(), "git_commit": git_commit(),
        "machine": machine(),
    }


# Settings a resume may always change: they decide neither which samples exist nor how they were graded.
RESUME_IGNORES = ("output_dir", "resume", "resume_may_change", "progress_bar", "grader_workers", "limit", "k")


def check_resume_config(cfg, out: Path) -> None:
    """Samples already in ``out`` were made under ``out/config.json``: reusing them under another protocol (a
    temperature, seed, model or grader) would report numbers no run produced, so a difference refuses
    (core/config_diff.py) unless ``resume_may_change`` names the keys."""
    stored, samples = out / "config.json", out / "samples.jsonl"
    if not (cfg.resume and stored.exists() and samples.exists() and samples.stat().st_size > 0):
        return
    check_unchanged(json.loads(stored.read_text()), OmegaConf.to_container(cfg, resolve=True), what=str(stored),
                    allowed=cfg.resume_may_change, ignored=RESUME_IGNORES, how_to_allow="resume_may_change")


def run_eval(cfg) -> dict:
    """Generate, grade and summarise; returns the summary dict (also written to ``summary.json``)."""
    check_config(cfg)
    get_benchmark(cfg.benchmark)  # an unknown name fails here, before anything is written
    out = Path(cfg.output_dir) if cfg.output_dir else default_output_dir(cfg)
    with folder_lock(out):  # held to the end; a second eval into this folder refuses before loading the model
        return evaluate(cfg, out)


def evaluate(cfg, out: Path) -> dict:
    """``run_eval``'s work, in the locked results folder ``out``."""
    bench = get_benchmark(cfg.benchmark)
    loaded = load_benchmark(cfg.benchmark, cfg.data_dir or None, cfg.source, tiny_n=cfg.tiny_n,
                            tiny_digits=cfg.tiny_digits)
    examples = loaded.examples[: cfg.limit] if cfg.limit else loaded.examples
    samples_path = out / "samples.jsonl"
    if not cfg.resume:
        samples_path.unlink(missing_ok=True)
    check_resume_config(cfg, out)
    atomic_write_json(out / "config.json", OmegaConf.to_container(cfg, resolve=True))
    # A torn last line (a crash mid-append) is dropped, so its sample is generated and graded again.
    done = {(r["problem_id"], r["sample_index"]) for r in resume_jsonl(samples_path)}

    policy, tok = load_policy(cfg.model, cfg.revision, cfg.device, cfg.dtype)
    engine = make_engine(cfg.engine, policy, tok)
    chat = use_chat_template(tok, cfg.chat_template)
    params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                            logprobs=False)
    prompts = {e.id: build_prompt(tok, e, bench.template, chat, cfg.enable_thinking) for e in examples}
    by_id = {e.id: e for e in examples}
    started = time.perf_counter()
    with Grader(bench, cfg) as grader:
        todo = [(c, part) for c, part in enumerate(chunks(examples, cfg.batch_prompts))
                if any((e.id, i) not in done for e in part for i in range(cfg.n))]
        bar = tqdm(total=len(examples), initial=len(examples) - sum(len(p) for _, p in todo),
                   disable=not cfg.progress_bar, desc=f"{cfg.benchmark}", unit="problem")
        for c, part in todo:
            ids = [e.id for e in part]
            samples = generate_chunk(engine, tok, [prompts[i] for i in ids], ids, cfg.n, params,
                                     chunk_seed=cfg.seed * CHUNK_SEED_STRIDE + c)
            samples = [s for s in samples if (s.problem_id, s.sample_index) not in done]
            for s, g in zip(samples, grader.grade([by_id[s.problem_id] for s in samples], samples)):
                append_jsonl(samples_path, {"problem_id": s.problem_id, "sample_index": s.sample_index,
                                            "prompt": prompts[s.problem_id], "response": s.response,
                                            "extracted": g.extracted, "status": g.status, "score": g.score,
                                            "detail": g.detail, "prompt_tokens": s.prompt_tokens,
                                            "response_tokens": s.response_tokens, "finish_reason": s.finish_reason,
                                            "chunk_seed": s.chunk_seed})
            bar.update(len(part))
        bar.close()
        info = protocol(cfg, loaded, grader, chat, prompts[examples[0].id] if examples else "")

    wanted = {e.id for e in examples}
    records = [r for r in read_jsonl(samples_path) if r["problem_id"] in wanted and r["sample_index"] < cfg.n]
    summary = {"metrics": summarize(records, k=cfg.k or cfg.n),
               "mean_response_tokens": sum(r["response_tokens"] for r in records) / max(len(records), 1),
               "seconds_this_call": round(time.perf_counter() - started, 2), "protocol": info}
    atomic_write_json(out / "summary.json", summary)
    return summary


@hydra.main(version_base="1.3", config_path=None, config_name="eval_schema")
def main(cfg: DictConfig) -> None:
    try:
        summary = run_eval(cfg)
    except FolderInUse as err:  # another eval holds the folder: an expected refusal, so one line, no traceback
        raise SystemExit(f"error: {err}") from None
    except ConfigChanged as err:  # a rerun over samples made under another protocol: a usage error
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    m = summary["metrics"]
    print({key: m[key] for key in m if key.startswith(("avg@", "pass@", "maj@"))})


register_eval_config()

if __name__ == "__main__":
    main()
