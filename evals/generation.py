"""Generating an eval's samples: load the model, build the prompts, sample fixed chunks with derived seeds.

Problems are cut into fixed chunks of ``batch_prompts`` in benchmark order and chunk ``c`` samples under
``torch.manual_seed(seed * 1_000_003 + c)``. A chunk's samples therefore do not depend on which other
chunks ran before, so a resumed eval reproduces an uninterrupted one (on the same hardware and versions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from core.rollout import SamplingParams
from evals.datasets import Example, render

CHUNK_SEED_STRIDE = 1_000_003


@dataclass
class GeneratedSample:
    problem_id: str
    sample_index: int
    response: str
    prompt_tokens: int
    response_tokens: int
    finish_reason: str  # "stop" (EOS) | "length" (hit max_new_tokens)
    chunk_seed: int


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but torch sees no GPU; use device=cpu (or device=auto)")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r}; choose auto, cpu or cuda")
    return device


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    if dtype == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    if dtype not in table:
        raise ValueError(f"dtype={dtype!r}; choose auto, float32 or bfloat16")
    return table[dtype]


def load_policy(model: str, revision: str, device: str, dtype: str):
    """(model, tokenizer) for generation; a clear error when a hub id cannot be fetched (offline)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = pick_device(device)
    kwargs = {"revision": revision} if revision else {}
    local = Path(model).expanduser()
    if not local.exists() and ("/" not in model or model.startswith((".", "/", "~"))):
        raise ValueError(f"model={model!r}: no such folder, and it does not look like a hub id (owner/name); "
                         "pass an HF-format checkpoint folder (e.g. runs/.../final) or a hub model id")
    try:
        tok = AutoTokenizer.from_pretrained(str(local) if local.exists() else model, **kwargs)
        policy = AutoModelForCausalLM.from_pretrained(str(local) if local.exists() else model,
                                                      dtype=pick_dtype(dtype, dev), **kwargs)
    except OSError as exc:
        raise ValueError(f"model={model!r} could not be loaded ({str(exc)[:300]}). Offline, pass a local "
                         "HF-format folder instead of a hub id (download it elsewhere with "
                         "`huggingface-cli download <id> --local-dir <folder>`).") from exc
    policy.to(dev).eval()
    return policy, for_batched_generation(tok)


def for_batched_generation(tok):
    """Left padding (prompts end where generation starts) and a pad token (EOS when the model has none)."""
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def use_chat_template(tok, mode: str) -> bool:
    has = bool(getattr(tok, "chat_template", None))
    if mode == "auto":
        return has
    if mode == "on" and not has:
        raise ValueError("chat_template=on but the tokenizer has no chat template; use chat_template=off")
    if mode not in ("on", "off"):
        raise ValueError(f"chat_template={mode!r}; choose auto, on or off")
    return mode == "on"


def build_prompt(tok, example: Example, template: str, chat: bool, enable_thinking: bool) -> str:
    """The exact model input text: the benchmark template, wrapped in the chat template when used."""
    text = render(template, example.problem)
    if not chat:
        return text
    return tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True,
                                   enable_thinking=enable_thinking)


def chunks(examples: list[Example], size: int) -> list[list[Example]]:
    if size < 1:
        raise ValueError(f"batch_prompts={size}; must be >= 1")
    return [examples[i:i + size] for i in range(0, len(examples), size)]


def generate_chunk(engine, tok, prompts: list[str], ids: list[str], n: int, params: SamplingParams,
                   chunk_seed: int) -> list[GeneratedSample]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(chunk_seed)
        batch = engine.generate(prompts, n, params)
    prompt_tokens = batch.prompt_mask.sum(dim=1).tolist()
    response_tokens = batch.response_mask.sum(dim=1).long().tolist()
    out = []
    for row, text in enumerate(batch.texts):
        p = int(batch.prompt_index[row])
        out.append(GeneratedSample(problem_id=ids[p], sample_index=row % n, response=text,
                                   prompt_tokens=int(prompt_tokens[row]), response_tokens=int(response_tokens[row]),
                                   finish_reason="length" if bool(batch.truncated[row]) else "stop",
                                   chunk_seed=chunk_seed))
    return out

