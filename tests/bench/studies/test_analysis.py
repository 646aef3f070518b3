"""Parameter-dynamics analysis (issue 6): metrics on known spectra, edits, alignment, embedding, snapshot hook."""

from __future__ import annotations

import math

import pytest
import torch

from bench.studies.analysis import alignment as al
from bench.studies.analysis import reconstruction as rc
from bench.studies.analysis.embedding import embedding_shift
from bench.studies.analysis.spectra import batched_svdvals, module_norms, spectral_metrics, spectral_table
from bench.train.snapshots import list_snapshots, load_snapshot, parse_snapshot_steps

NAME = "model.layers.{}.self_attn.{}_proj.weight"


def _orth(m: int, r: int, seed: int) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(m, r, generator=torch.Generator().manual_seed(seed)))[0]


def test_rank1_metrics():
    u, v = _orth(32, 1, 0), _orth(16, 1, 1)
    s = torch.linalg.svdvals(3.0 * u @ v.T)
    m = spectral_metrics(s)
    assert m["sigma1"] == pytest.approx(3.0, rel=1e-5)
    assert m["sigma1_ratio"] == pytest.approx(1.0, rel=1e-5)
    assert m["eff_rank"] == pytest.approx(1.0, abs=1e-3)
    assert m["top1pct"] == pytest.approx(1.0, rel=1e-5) and m["topk_fixed"] == pytest.approx(1.0, rel=1e-5)


def test_identity_metrics():
    n = 200
    m = spectral_metrics(torch.linalg.svdvals(torch.eye(n)))
    assert m["eff_rank"] == pytest.approx(n, rel=1e-5)
    assert m["sigma1_ratio"] == pytest.approx(1 / math.sqrt(n), rel=1e-5)
    assert m["k_1pct"] == 2 and m["top1pct"] == pytest.approx(math.sqrt(2 / n), rel=1e-5)


def test_batched_svdvals_and_table_match_per_matrix():
    g = torch.Generator().manual_seed(0)
    mats = {NAME.format(i, mod): torch.randn(*shp, generator=g) for i in range(2)
            for mod, shp in (("q", (16, 8)), ("k", (8, 8)), ("v", (8, 8)))}
    sv = batched_svdvals(mats)
    for n, m in mats.items():
        torch.testing.assert_close(sv[n], torch.linalg.svdvals(m))
    t = spectral_table(mats)
    assert len(t["per_matrix"]) == 6 and t["layers"] == [0, 1] and t["dtype"] == "float32"
    shares = module_norms(mats)
    assert sum(r["share"] for r in shares) == pytest.approx(1.0)


def test_reconstruction_full_and_partial():
    g = torch.Generator().manual_seed(0)
    d = {NAME.format(0, "q"): torch.randn(20, 10, generator=g)}
    full = rc.truncate(d, 1.0, "top")
    torch.testing.assert_close(full[NAME.format(0, "q")], d[NAME.format(0, "q")], atol=1e-5, rtol=1e-5)
    top, bottom = rc.truncate(d, 0.1, "top"), rc.truncate(d, 0.1, "bottom")
    s = torch.linalg.svdvals(d[NAME.format(0, "q")])
    assert torch.linalg.matrix_rank(top[NAME.format(0, "q")]) == 1
    assert float(top[NAME.format(0, "q")].norm()) == pytest.approx(float(s[0]), rel=1e-5)
    assert float(bottom[NAME.format(0, "q")].norm()) == pytest.approx(float(s[-1]), rel=1e-4)
    assert rc.frobenius(rc.rescale_to(top, 2.5)) == pytest.approx(2.5, rel=1e-5)


def test_alpha_endpoints_and_norm_matching():
    base = {NAME.format(0, "q"): torch.ones(4, 4)}
    d = {NAME.format(0, "q"): torch.arange(16.0).reshape(4, 4)}
    assert torch.equal(rc.apply(base, d, 0.0)[NAME.format(0, "q")], base[NAME.format(0, "q")])
    assert torch.equal(rc.apply(base, d, 1.0)[NAME.format(0, "q")], base[NAME.format(0, "q")] + d[NAME.format(0, "q")])
    early = {NAME.format(0, "q"): 0.1 * d[NAME.format(0, "q")]}
    m = rc.norm_matched(early, d, 1.0)[NAME.format(0, "q")]
    assert float(m.norm()) == pytest.approx(float(d[NAME.format(0, "q")].norm()), rel=1e-5)
    assert torch.equal(rc.norm_matched(early, d, 0.0)[NAME.format(0, "q")], early[NAME.format(0, "q")])


def test_window_selects_layers_and_group():
    d = {f"model.layers.{i}.{g}.{m}_proj.weight": torch.zeros(2, 2) for i in range(4)
         for g, m in (("self_attn", "q"), ("mlp", "up"))}
    w = rc.window(d, 1, 1, "mlp")
    assert sorted(w) == [f"model.layers.{i}.mlp.up_proj.weight" for i in (0, 1, 2)]


def test_alignment_with_itself_is_one_and_planted_subspace():
    g = torch.Generator().manual_seed(0)
    d = {NAME.format(0, "q"): torch.randn(32, 16, generator=g)}
    a = al.alignment(d, d, r=4)[NAME.format(0, "q")]
    assert a["u1_cos"] == pytest.approx(1.0, abs=1e-5) and a["subspace_cos"] == pytest.approx(1.0, abs=1e-5)
    U, V = _orth(32, 3, 1), _orth(16, 3, 2)
    planted = U @ torch.diag(torch.tensor([3.0, 2.0, 1.0])) @ V.T
    rotated = U @ torch.diag(torch.tensor([1.0, 3.0, 2.0])) @ V.T  # same subspace, u1 now a different vector
    b = al.alignment({"x.layers.0.self_attn.q_proj.weight": planted}, {"x.layers.0.self_attn.q_proj.weight": rotated},
                     r=3)["x.layers.0.self_attn.q_proj.weight"]
    assert b["subspace_cos"] == pytest.approx(1.0, abs=1e-5) and b["u1_cos"] == pytest.approx(0.0, abs=1e-5)
    assert float(al.principal_cosines(_orth(32, 2, 3), _orth(32, 2, 4)).max()) < 1.0


def test_sign_alignment():
    v = torch.tensor([1.0, 0.0])
    traj = torch.stack([-v, v, -v, v])
    out = al.align_signs(traj)
    assert all(float(out[i] @ out[-1]) > 0 for i in range(4))
    assert torch.equal(out[-1], v)


def test_embedding_shift_identical_is_zero():
    e = torch.randn(10, 8, generator=torch.Generator().manual_seed(0))
    sh = embedding_shift(e, e.clone(), torch.tensor([1, 3, 3, 7]))
    assert sh["ids"].tolist() == [1, 3, 7]
    torch.testing.assert_close(sh["cos"], torch.ones(3, dtype=torch.float64))
    assert float(sh["rel_l2"].abs().max()) == 0.0


def test_parse_snapshot_steps():
    assert parse_snapshot_steps("", 50) == []
    assert parse_snapshot_steps("pow2", 10) == [0, 1, 2, 4, 8, 10]
    assert parse_snapshot_steps("pow2+every:5", 12) == [0, 1, 2, 4, 5, 8, 10, 12]
    assert parse_snapshot_steps("at:3", 4) == [0, 3, 4]
    with pytest.raises(ValueError):
        parse_snapshot_steps("weekly", 4)


@pytest.mark.slow
def test_snapshot_hook_writes_expected_steps(micro_cfg, tmp_path):
    from bench.train import train

    out = tmp_path / "snaprun"
    train(micro_cfg(["experiment=opd", "trainer.snapshot_steps=at:3", "trainer.save_final_model=false"], out=out))
    snaps = list_snapshots(out)
    assert sorted(snaps) == [0, 3, 4]
    s0, s4 = load_snapshot(snaps[0]), load_snapshot(snaps[4])
    assert "model.embed_tokens.weight" in s0
    n2d = [k for k in s0 if "_proj" in k]
    assert len(n2d) == 2 * 7 and all(s0[k].ndim == 2 for k in n2d)  # 2 layers x q,k,v,o,gate,up,down
    assert any(not torch.equal(s0[k], s4[k]) for k in n2d)
    assert not list((out / "snapshots").glob(".*tmp"))
