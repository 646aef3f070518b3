"""Chunked log-probs: same values and gradients as the one-pass path, without whole-batch logits."""

from __future__ import annotations

import json

import pytest
import torch

from bench.algorithms.logprobs import response_logprobs, token_logprobs


@pytest.fixture
def student(micro_cache):
    from bench.world import load_model
    from tests.bench.world.test_hubworld import micro_model

    torch.manual_seed(0)
    return load_model(micro_model(micro_cache), trainable=True)


def batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 90, (3, 14), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # a left-padded row
    return ids, mask


@pytest.mark.parametrize("chunk", [1, 3, 5, 10])
def test_chunked_matches_one_pass_values_and_gradients(student, chunk):
    ids, mask = batch()
    plain, _ = token_logprobs(student, ids, mask, 10, chunk=0)
    assert torch.equal(plain, response_logprobs(student, ids, mask, 10))  # chunk=0 is the old path exactly
    plain.sum().backward()
    want = {n: p.grad.clone() for n, p in student.named_parameters()}
    student.zero_grad()
    chunked, dist = token_logprobs(student, ids, mask, 10, chunk=chunk)
    assert dist is None and chunked.shape == plain.shape
    # Bounds from float32 summation, not from one CPU's results: reordering a sum of n terms moves it by at most
    # about n * eps * (the sum of their magnitudes) (Higham's gamma_n). A log-prob is a log-sum-exp over the
    # vocabulary (n = V, magnitude |log p|); a weight's gradient sums one term per response token (n = tokens,
    # magnitude bounded by the largest entry of the one-pass gradient times a margin of 4).
    eps = torch.finfo(torch.float32).eps
    vocab, tokens = student.config.vocab_size, int(mask[:, -10:].sum())
    assert (chunked - plain).abs().max().item() <= vocab * eps * plain.abs().max().item()
    chunked.sum().backward()
    for n, p in student.named_parameters():
        assert (p.grad - want[n]).abs().max().item() <= 4 * tokens * eps * want[n].abs().max().item(), n


def test_full_distribution_requests_take_the_one_pass_path(student):
    ids, mask = batch()
    logp, dist = token_logprobs(student, ids, mask, 10, chunk=4, full=True)
    assert dist.shape == (3, 10, student.config.vocab_size)
    assert torch.equal(logp, dist.gather(-1, ids[:, -10:].unsqueeze(-1)).squeeze(-1))


@pytest.mark.slow
def test_opd_run_with_chunked_logprobs_matches(micro_cfg, tmp_path):
    from bench.train import train

    losses = {}
    for chunk in (0, 7):
        out = tmp_path / f"c{chunk}"
        train(micro_cfg(["trainer.total_steps=2", f"trainer.logprob_chunk={chunk}"], out=out))
        losses[chunk] = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert losses[0] == pytest.approx(losses[7], abs=1e-5)
