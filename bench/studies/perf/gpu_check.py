"""GPU check: one OPD step of the shared trainer at paper-like shapes, split and measured.

``python -m bench.studies.perf.gpu_check`` (on a GPU; under 8 minutes on one H100/H200) builds random-weight Qwen3
models of Qwen3-0.6B (student) and Qwen3-1.7B (teacher) shape, vocabulary 151,936, nothing downloaded, and
measures:

- the bf16 matmul peak of this GPU (8192^3 GEMMs), the denominator of MFU;
- rollouts: HF ``generate`` with the dynamic cache (plain HF) and through our engine with the static cache,
  ``--gen-batch`` prompts x ``--gen-tokens`` new tokens, tokens/s each;
- an OPD step of ``bench.train``'s own phases on ``--seqs`` x ``--seq-len`` token sequences: teacher scoring
  (``score_phase``) and the update (``update_phase``: bf16 autocast over fp32 master weights, activation
  checkpointing, chunked log-probs), with update-phase MFU (6 x parameters x tokens / time / peak) and the
  peak memory of each phase;

and writes ``results/perf/gpu_<device>.json``. Anchor (plain HF on an H200, torch 2.11): training 29% MFU,
46k tokens/s, 62 GiB at 4 x 4096; generation 1.9k (dynamic) / 9.4k (static) tokens/s at batch 64 x 256.
Goals: update MFU >= 35% at half that memory; rollouts >= 3x dynamic-cache HF generate.
``--device cpu --smoke`` runs the same code on tiny shapes (the test suite does), so the script cannot rot.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time
from types import SimpleNamespace

import torch

from core.io import atomic_write_json
from core.paths import RESULTS_DIR

SHAPES = {  # published Qwen3 configs (hidden, intermediate, layers, heads, kv heads)
    "qwen3-0.6b": (1024, 3072, 28, 16, 8),
    "qwen3-1.7b": (2048, 6144, 28, 16, 8),
    "smoke": (64, 128, 2, 2, 1),
}
ANCHOR = {"train_mfu": 0.29, "train_tokens_per_s": 46_000, "train_peak_gib": 62.0,
          "gen_dynamic_tokens_per_s": 1_900, "gen_static_tokens_per_s": 9_400}


def qwen3(shape: str, vocab: int, device: str, dtype: torch.dtype):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    hidden, inter, layers, heads, kv = SHAPES[shape]
    config = Qwen3Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv, head_dim=128 if shape != "smoke" else 32,
                         tie_word_embeddings=True, max_position_embeddings=40960, eos_token_id=vocab - 1,
                         pad_token_id=vocab - 2, attn_implementation="sdpa")
    with torch.device(device):
        model = Qwen3ForCausalLM(config)
    return model.to(dtype)


class RandomTokenizer:
    """Just enough tokenizer for the engine: fixed-length random prompts, left padding, no text."""

    padding_side = "left"

    def __init__(self, vocab: int, prompt_len: int, device: str):
        self.vocab, self.prompt_len, self.device = vocab, prompt_len, device
        self.eos_token_id, self.pad_token_id = vocab - 1, vocab - 2

    def __call__(self, rows, **_):
        g = torch.Generator().manual_seed(len(rows))
        ids = torch.randint(0, self.vocab - 2, (len(rows), self.prompt_len), generator=g)
        return _Encoding(input_ids=ids, attention_mask=torch.ones_like(ids))

    def batch_decode(self, ids, **_):
        return [""] * len(ids)


class _Encoding(dict):
    def to(self, device):
        return _Encoding({k: v.to(device) for k, v in self.items()})


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int = 1) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs (after the caller's warm-up)."""
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 1024**3 if device == "cuda" else None


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def matmul_peak_tflops(device: str, n: int) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    seconds = timed(lambda: [a @ b for _ in range(10)], device, repeats=3) / 10
    return 2 * n**3 / seconds / 1e12


def measure_generation(model, tok, device: str, batch: int, tokens: int) -> dict:
    from core.rollout import SamplingParams
    from core.rollout.hf import HFRolloutEngine

    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=tokens, logprobs=False)
    prompts = [""] * batch
    out = {}
    for mode in ("off", "on"):
        engine = HFRolloutEngine(model, tok, static_cache=mode)
        engine.generate(prompts[:2], 1, SamplingParams(1.0, 1.0, 4, logprobs=False))  # warm-up / compile caches
        rollout = None

        def run():
            nonlocal rollout
            rollout = engine.generate(prompts, 1, params)

        seconds = timed(run, device)
        out["static" if mode == "on" else "dynamic"] = {"seconds": round(seconds, 3),
                                                        "tokens_per_s": round(rollout.num_tokens / seconds, 1)}
    out["static_over_dynamic"] = round(out["static"]["tokens_per_s"] / out["dynamic"]["tokens_per_s"], 2)
    return out


def opd_step(student, teacher, device: str, seqs: int, seq_len: int, micro: int, chunk: int,
             peak_tflops: float) -> dict:
    """``score_phase`` + ``update_phase`` of bench.train on random [seqs, seq_len] rollouts (half prompt)."""
    from bench.config import compose_config
    from bench.train.phases import score_phase, update_phase
    from core.rollout.base import RolloutBatch

    cfg = compose_config(["experiment=opd", f"trainer.micro_batch_size={micro}", f"trainer.logprob_chunk={chunk}",
                          "trainer.activation_checkpointing=true", "trainer.output_dir=unused",
                          f"rollout.max_new_tokens={seq_len // 2}"])
    vocab = student.config.vocab_size
    p = r = seq_len // 2
    g = torch.Generator().manual_seed(0)
    rollout = RolloutBatch(prompt_ids=torch.randint(0, vocab - 2, (seqs, p), generator=g).to(device),
                           prompt_mask=torch.ones(seqs, p, dtype=torch.long, device=device),
                           response_ids=torch.randint(0, vocab - 2, (seqs, r), generator=g).to(device),
                           response_mask=torch.ones(seqs, r, device=device), logprobs=None,
                           truncated=torch.zeros(seqs, dtype=torch.bool, device=device), texts=[""] * seqs,
                           prompt_index=torch.arange(seqs, device=device))
    world = SimpleNamespace(score=lambda problems, texts, truncated: [0.0] * len(texts))
    student.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-6, fused=device == "cuda")
    autocast = torch.autocast(device, dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext()
    result = {}
    for _attempt in ("warmup", "timed"):  # the second pass is the one reported
        reset_peak(device)
        with autocast:
            t_score = timed(lambda: result.__setitem__("scored", score_phase(
                cfg, rollout, [None] * seqs, teacher, None, world)), device)
            score_peak = peak_gib(device)
            reset_peak(device)
            t_update = timed(lambda: update_phase(cfg, student, optimizer, result["scored"]), device)
        update_peak = peak_gib(device)
    tokens = seqs * seq_len
    n_params = sum(q.numel() for q in student.parameters())
    return {"sequences": seqs, "seq_len": seq_len, "tokens": tokens, "micro_batch_size": micro,
            "logprob_chunk": chunk, "score_seconds": round(t_score, 4), "update_seconds": round(t_update, 4),
            "update_tokens_per_s": round(tokens / t_update, 1), "score_peak_gib": score_peak,
            "update_peak_gib": update_peak, "update_flops": 6 * n_params * tokens, "student_parameters": n_params,
            "update_mfu": round(6 * n_params * tokens / t_update / 1e12 / peak_tflops, 3)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes: checks the code path (CPU tests)")
    ap.add_argument("--gen-batch", type=int, default=64)
    ap.add_argument("--gen-tokens", type=int, default=256)
    ap.add_argument("--seqs", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--micro", type=int, default=1, help="sequences per forward/backward")
    ap.add_argument("--chunk", type=int, default=1024, help="trainer.logprob_chunk")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    dev = args.device
    small = args.smoke
    vocab = 512 if small else 151_936
    torch.manual_seed(0)
    report = {"device": torch.cuda.get_device_name() if dev == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "anchor_plain_hf_h200": ANCHOR, "args": vars(args)}
    report["bf16_matmul_peak_tflops"] = round(matmul_peak_tflops(dev, 256 if small else 8192), 3)
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    gen_model = qwen3("smoke" if small else "qwen3-0.6b", vocab, dev, dtype).eval()
    tok = RandomTokenizer(vocab, 8 if small else 64, dev)
    report["generation"] = measure_generation(gen_model, tok, dev, 4 if small else args.gen_batch,
                                              8 if small else args.gen_tokens)
    del gen_model
    student = qwen3("smoke" if small else "qwen3-0.6b", vocab, dev, torch.float32)  # fp32 master weights
    teacher = qwen3("smoke" if small else "qwen3-1.7b", vocab, dev, dtype).eval().requires_grad_(False)
    step = opd_step(student, teacher, dev, 2 if small else args.seqs, 16 if small else args.seq_len,
                    1 if small else args.micro, 4 if small else args.chunk, report["bf16_matmul_peak_tflops"])
    report["opd_step"] = step
    report["goals"] = {
        "update_mfu_ge_0.35": step["update_mfu"] >= 0.35,
        "update_peak_le_31_gib": None if step["update_peak_gib"] is None else step["update_peak_gib"] <= 31.0,
        "rollout_ge_3x_dynamic": report["generation"]["static_over_dynamic"] >= 3.0,
    }
    name = report["device"].replace(" ", "_").replace("/", "_")
    out = args.out or str(RESULTS_DIR / "perf" / f"gpu_{name}.json")
    atomic_write_json(out, report)
    print(out)
    return report


if __name__ == "__main__":
    main()
