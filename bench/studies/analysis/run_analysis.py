"""All analyses of one run folder (snapshots + config.yaml), written to ``<run>/analysis/``.

    python -m bench.analysis run runs/analysis/OPD/seed0 [--prompts 200] [--no-eval]

Without the trainer: only ``snapshots/*.safetensors``, ``config.yaml`` and ``final_model/`` are read.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from bench.studies.analysis import alignment as al
from bench.studies.analysis import reconstruction as rc
from bench.studies.analysis.embedding import embedding_shift
from bench.studies.analysis.spectra import batched_svd, deltas, module_norms, spectral_table
from bench.studies.stats import mean_ci
from bench.train.snapshots import EMBED, MODULES, key_info, list_snapshots, load_hf_tensors, load_snapshot
from core.io import atomic_write_json

ALPHAS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
FRACS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
BETAS = (0.0, 0.25, 0.5, 0.75, 1.0)
EARLY_PROGRESS = 0.1  # the beta sweep's checkpoint: the first snapshot at >= 10% of training


def _stats(values: list[float]) -> dict:
    t = torch.tensor(values, dtype=torch.float64)
    return {"mean": float(t.mean()), "std": float(t.std()) if len(values) > 1 else 0.0}


def static_analyses(run_dir: Path, r: int = 4) -> dict:
    """Analyses 1, 2, 5, 8 (no evaluation): norms, spectra, alignment over snapshots, u1 trajectories."""
    snaps = list_snapshots(run_dir)
    if 0 not in snaps or len(snaps) < 2:
        raise FileNotFoundError(f"{run_dir}: needs snapshots/step000000 and a later snapshot (trainer.snapshot_steps)")
    steps = sorted(snaps)
    T = steps[-1]
    base, final = load_snapshot(snaps[0]), load_snapshot(snaps[T])
    dT = deltas(base, final)
    svd_T = batched_svd(dT)
    out = {"run": str(run_dir), "steps": steps, "final_step": T, "norms": module_norms(dT),
           "total_fro": rc.frobenius(dT), "spectra": spectral_table(dT), "r": r}
    align_rows, trajectories_in = [], []
    for t in steps[1:]:
        dt = dT if t == T else deltas(base, load_snapshot(snaps[t]))
        trajectories_in.append(dt)
        a = al.alignment(dt, dT, r=r, svd_T=svd_T)
        row = {"step": t, "progress": t / T, "fro": rc.frobenius(dt),
               "u1_cos": _stats([v["u1_cos"] for v in a.values()]),
               "subspace_cos": _stats([v["subspace_cos"] for v in a.values()]),
               "per_module": {m: {"u1_cos": _stats([v["u1_cos"] for n, v in a.items() if key_info(n)[1] == m]),
                                  "subspace_cos": _stats([v["subspace_cos"] for n, v in a.items()
                                                          if key_info(n)[1] == m])} for m in MODULES}}
        align_rows.append(row)
    out["alignment"] = align_rows
    traj = al.top_directions(trajectories_in)
    torch.save({"steps": steps[1:], "u1": traj}, run_dir / "analysis" / "u1_trajectories.pt")
    out["_base"], out["_final"], out["_dT"], out["_svd_T"], out["_snaps"] = base, final, dT, svd_T, snaps
    return out


def eval_analyses(run_dir: Path, st: dict, evaluator, target_norm: float, half_widths=(0, 1)) -> dict:
    """Analyses 3, 4, 6, 7 (greedy accuracy of edited weights) and 9 (embedding shift)."""
    base, dT, svd_T, snaps = st["_base"], st["_dT"], st["_svd_T"], st["_snaps"]
    acc = evaluator.accuracy
    full_final = load_hf_tensors(run_dir / "final_model") if (run_dir / "final_model").exists() else st["_final"]
    res = {"eval_prompts": len(evaluator.problems)}
    res["acc_base"] = acc({})
    res["acc_final_2d"] = acc(rc.apply(base, dT))
    res["acc_final_full"] = acc(full_final)
    a0, aT = res["acc_base"], res["acc_final_2d"]

    def recovered(a: float) -> float | None:
        return (a - a0) / (aT - a0) if abs(aT - a0) > 1e-9 else None

    total = st["total_fro"]
    known = {0.0: a0, 1.0: aT}  # the endpoints are the base and the full 2-D update: not re-evaluated
    res["alpha"] = [{"alpha": a, "fro": a * total, "acc": known[a] if a in known else acc(rc.apply(base, dT, a))}
                    for a in ALPHAS]
    res["target_norm"] = target_norm
    recon, full = [], None
    for which in ("top", "bottom"):
        for f in FRACS:
            if f == 1.0 and full is not None:  # k = 100%: top and bottom are the same (rescaled) Delta W
                recon.append({"which": which, "frac": f, "acc": full})
                continue
            d = rc.rescale_to(rc.truncate(dT, f, which, svd_T), target_norm)
            recon.append({"which": which, "frac": f, "acc": acc(rc.apply(base, d))})
            full = recon[-1]["acc"] if f == 1.0 else full
    res["reconstruction"] = recon
    T = st["final_step"]
    early = []
    for t in st["steps"][1:-1]:
        dt = deltas(base, load_snapshot(snaps[t]))
        a = acc(rc.apply(base, rc.norm_matched(dt, dT, 1.0)))
        early.append({"step": t, "progress": t / T, "acc": a, "recovered": recovered(a)})
    res["early"] = early
    t_early = next(t for t in st["steps"][1:] if t / T >= EARLY_PROGRESS)
    d_early = deltas(base, load_snapshot(snaps[t_early]))
    res["beta"] = {"step": t_early, "progress": t_early / T, "rows": []}
    early_at = {e["step"]: e["acc"] for e in early}
    for b in BETAS:
        if b == 1.0 and t_early in early_at:  # already evaluated by the progress sweep
            a = early_at[t_early]
        else:
            a = acc(rc.apply(base, rc.norm_matched(d_early, dT, b)))
        res["beta"]["rows"].append({"beta": b, "acc": a, "recovered": recovered(a)})
    layers = sorted({key_info(n)[0] for n in dT})
    res["window"] = []
    for hw in half_widths:
        for group in ("mlp", "attn"):
            for c in layers:
                a = acc(rc.apply(base, rc.window(dT, c, hw, group)))
                res["window"].append({"half_width": hw, "group": group, "centre": c, "acc": a,
                                      "recovered": recovered(a)})
    # Analysis 9: input-embedding rows of the tokens the trained model generates on the eval subset.
    ids = evaluator.generated_tokens(full_final)
    e0 = st["_base"][EMBED]
    e1 = full_final.get(EMBED, st["_final"][EMBED])
    sh = embedding_shift(e0, e1, ids)
    res["embedding"] = {"tokens": int(sh["ids"].numel()), "generated": int(ids.numel()),
                        "cos": mean_ci(sh["cos"].tolist()), "rel_l2": mean_ci(sh["rel_l2"].tolist()),
                        "tied_lm_head": True, "per_token_cos": sh["cos"].tolist(),
                        "per_token_rel_l2": sh["rel_l2"].tolist()}
    res["eval_calls"] = evaluator.calls
    return res


def analyse_run(run_dir: str | Path, n_prompts: int = 200, target_norm: float | None = None, r: int = 4,
                half_widths=(0, 1), with_eval: bool = True, write: bool = True) -> dict:
    run_dir = Path(run_dir)
    (run_dir / "analysis").mkdir(exist_ok=True)
    t0 = time.perf_counter()
    st = static_analyses(run_dir, r=r)
    t1 = time.perf_counter()
    res = {k: v for k, v in st.items() if not k.startswith("_")}
    res["seconds"] = {"static": round(t1 - t0, 3)}
    if with_eval:
        from bench.studies.analysis.evaluator import Evaluator

        ev = Evaluator(run_dir, n_prompts=n_prompts)
        t2 = time.perf_counter()
        res.update(eval_analyses(run_dir, st, ev, target_norm if target_norm else st["total_fro"], half_widths))
        t3 = time.perf_counter()
        res["seconds"].update({"load_world": round(t2 - t1, 3), "eval": round(t3 - t2, 3)})
    res["seconds"]["total"] = round(time.perf_counter() - t0, 3)
    if write:
        atomic_write_json(run_dir / "analysis" / "analysis.json", res)
    return res


def final_norm(run_dir: str | Path) -> float:
    snaps = list_snapshots(run_dir)
    return rc.frobenius(deltas(load_snapshot(snaps[0]), load_snapshot(snaps[max(snaps)])))

