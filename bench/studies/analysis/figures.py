"""Figures for analyses 1-9 (results/figures/*.png): OPD vs GRPO, bands over seeds (and matrices where said)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.studies.analysis.alignment import pca_2d  # noqa: E402
from bench.train.snapshots import MODULES  # noqa: E402
from core.io import atomic_save_figure  # noqa: E402

COLORS = {"OPD": "tab:blue", "GRPO": "tab:red"}


def _band(ax, x, ys, label, color):
    ys = np.asarray(ys, dtype=float)
    m = ys.mean(0)
    ax.plot(x, m, "-o", ms=3, label=label, color=color)
    if ys.shape[0] > 1:
        s = ys.std(0, ddof=1)
        ax.fill_between(x, m - s, m + s, alpha=0.2, color=color)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)
    plt.close(fig)


def fig_norms(runs: dict, out: Path) -> None:
    """Layer x module heatmaps: ||dW||_F (top row) and its share of the total squared norm (bottom), seed mean."""
    fig, axes = plt.subplots(2, len(runs), figsize=(5 * len(runs), 6.2), squeeze=False)
    for col, (method, rs) in enumerate(runs.items()):
        layers = sorted({r["layer"] for r in rs[0]["norms"]})
        grids = {k: np.zeros((len(layers), len(MODULES))) for k in ("fro", "share")}
        for res in rs:
            for r in res["norms"]:
                for k in grids:
                    grids[k][layers.index(r["layer"]), MODULES.index(r["module"])] += r[k] / len(rs)
        total = np.mean([res["total_fro"] for res in rs])
        for row, (k, title) in enumerate((("fro", f"{method}: ||dW||_F (total {total:.3f})"),
                                          ("share", f"{method}: share of total ||dW||_F^2"))):
            ax, grid = axes[row, col], grids[k]
            im = ax.imshow(grid, cmap="viridis", aspect="auto")
            ax.set_xticks(range(len(MODULES)), MODULES)
            ax.set_yticks(range(len(layers)), layers)
            ax.set_ylabel("layer")
            ax.set_title(title + f" (mean of {len(rs)} seeds)", fontsize=9)
            for i in range(len(layers)):
                for j in range(len(MODULES)):
                    ax.text(j, i, f"{grid[i, j]:.3f}" if k == "fro" else f"{grid[i, j]:.2f}", ha="center",
                            va="center", fontsize=7, color="w")
            fig.colorbar(im, ax=ax)
    _save(fig, out / "fig1_update_norms.png")


def fig_spectra(runs: dict, out: Path) -> None:
    keys = [("sigma1_ratio", "sigma1 / ||dW||_F"), ("eff_rank", "effective rank"), ("top1pct", "top-1% energy ratio"),
            ("topk_fixed", "top-4 energy ratio")]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    for ax, (k, title) in zip(axes, keys):
        for method, rs in runs.items():
            _band(ax, rs[0]["spectra"]["layers"], [r["spectra"]["per_layer"][k] for r in rs], method, COLORS[method])
        ax.set_xlabel("layer")
        ax.set_title(title + " (mean over modules; band: std over seeds)", fontsize=8)
        ax.legend()
    _save(fig, out / "fig2_spectral_metrics_per_layer.png")


def fig_reconstruction(runs: dict, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, rs in runs.items():
        for which, ls in (("top", "-"), ("bottom", "--")):
            rows = [[x for x in r["reconstruction"] if x["which"] == which] for r in rs]
            x = [100 * e["frac"] for e in rows[0]]
            ys = np.array([[e["acc"] for e in row] for row in rows])
            ax.plot(x, ys.mean(0), ls, marker="o", ms=3, color=COLORS[method], label=f"{method} {which}-k%")
            if len(rs) > 1:
                ax.fill_between(x, ys.mean(0) - ys.std(0, ddof=1), ys.mean(0) + ys.std(0, ddof=1),
                                alpha=0.15, color=COLORS[method])
    ax.set_xscale("log")
    ax.set_xlabel("k (% of singular triplets kept per matrix)")
    ax.set_ylabel("greedy test accuracy")
    ax.set_title("Fig. 3 analogue: W0 + dW_k, every update rescaled to one common Frobenius norm", fontsize=8)
    ax.legend(fontsize=7)
    _save(fig, out / "fig3_topk_reconstruction.png")


def fig_alpha(runs: dict, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, rs in runs.items():
        x = np.mean([[e["fro"] for e in r["alpha"]] for r in rs], 0)
        _band(ax, x, [[e["acc"] for e in r["alpha"]] for r in rs], method, COLORS[method])
    ax.set_xlabel("||alpha dW||_F (alpha = 0, 0.2, ..., 1)")
    ax.set_ylabel("greedy test accuracy")
    ax.set_title("Fig. 2 analogue: W0 + alpha dW (2-D attention/MLP weights only)", fontsize=8)
    ax.legend()
    _save(fig, out / "fig4_alpha_scaling.png")


def fig_alignment(runs: dict, out: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, key, title in ((axes[0], "u1_cos", "|cos(u1(t), u1(T))|"),
                           (axes[1], "subspace_cos", "mean principal cosine, top-r left subspaces")):
        for method, rs in runs.items():
            x = [a["progress"] for a in rs[0]["alignment"]]
            m = np.array([[a[key]["mean"] for a in r["alignment"]] for r in rs])
            s = np.array([[a[key]["std"] for a in r["alignment"]] for r in rs])
            mean = m.mean(0)
            band = np.sqrt((s ** 2).mean(0) + m.var(0))  # total std over matrices and seeds
            ax.plot(x, mean, "-o", ms=3, color=COLORS[method], label=method)
            ax.fill_between(x, mean - band, mean + band, alpha=0.2, color=COLORS[method])
        ax.set_xlabel("training progress t / T")
        ax.set_title(f"Fig. 4b: {title} (r={runs['OPD'][0]['r']})\nband: std over matrices and seeds",
                     fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.legend()
    _save(fig, out / "fig5_subspace_alignment.png")


def fig_early(runs: dict, out: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for method, rs in runs.items():
        x = [e["progress"] for e in rs[0]["early"]]
        _band(axes[0], x, [[e["recovered"] or 0 for e in r["early"]] for r in rs], method, COLORS[method])
        xb = [e["beta"] for e in rs[0]["beta"]["rows"]]
        _band(axes[1], xb, [[e["recovered"] or 0 for e in r["beta"]["rows"]] for r in rs],
              f"{method} (t/T={rs[0]['beta']['progress']:.2f})", COLORS[method])
    axes[0].axhline(0.8, ls=":", color="k", lw=0.8)
    axes[0].set_xlabel("checkpoint progress t / T")
    axes[0].set_ylabel("share of final gain recovered")
    axes[0].set_title("Fig. 4c analogue: dW_t rescaled per module to ||dW_T|| (paper: ~0.8 at t/T=0.1)", fontsize=8)
    axes[1].set_xlabel("beta")
    axes[1].set_title("[1 + beta(||dW_T||/||dW_t|| - 1)] dW_t", fontsize=8)
    for ax in axes:
        ax.legend()
    _save(fig, out / "fig6_early_checkpoint_scaling.png")


def fig_window(runs: dict, out: Path) -> None:
    hws = sorted({w["half_width"] for w in runs["OPD"][0]["window"]})
    fig, axes = plt.subplots(1, len(hws), figsize=(5.5 * len(hws), 3.6))
    for ax, hw in zip(np.atleast_1d(axes), hws):
        for method, rs in runs.items():
            for group, ls in (("mlp", "-"), ("attn", "--")):
                rows = [[w for w in r["window"] if w["half_width"] == hw and w["group"] == group] for r in rs]
                x = [w["centre"] for w in rows[0]]
                ys = np.array([[w["recovered"] or 0 for w in row] for row in rows])
                ax.plot(x, ys.mean(0), ls, marker="o", ms=3, color=COLORS[method], label=f"{method} {group}")
        ax.set_xlabel("centre layer")
        ax.set_ylabel("share of final gain")
        ax.set_title(f"W0 + module updates of layers within +-{hw} of the centre", fontsize=8)
        ax.legend(fontsize=7)
    _save(fig, out / "fig7_sliding_window.png")


def fig_trajectories(traj_files: dict[str, Path], out: Path) -> None:
    """u1 trajectories (sign-aligned) of every layer, PCA fitted per module type on both methods together."""
    data = {m: torch.load(p) for m, p in traj_files.items()}
    fig, axes = plt.subplots(1, len(MODULES), figsize=(3.2 * len(MODULES), 3.2))
    for ax, mod in zip(axes, MODULES):
        series = []
        for method, d in data.items():
            for name, tr in d["u1"].items():
                if f".{mod}_proj." in name:
                    series.append((method, name, tr))
        pts = pca_2d(torch.cat([tr for _, _, tr in series]))
        i = 0
        for method, _name, tr in series:
            p = pts[i: i + len(tr)].numpy()
            i += len(tr)
            ax.plot(p[:, 0], p[:, 1], "-", color=COLORS[method], lw=0.8, alpha=0.8)
            ax.plot(p[-1, 0], p[-1, 1], "*", color=COLORS[method], ms=6)
        ax.set_title(f"{mod}_proj u1 (PCA)", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].plot([], [], color=COLORS["OPD"], label="OPD")
    axes[0].plot([], [], color=COLORS["GRPO"], label="GRPO")
    axes[0].legend(fontsize=7)
    _save(fig, out / "fig8_u1_trajectories_pca.png")


def fig_embedding(runs: dict, out: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for method, rs in runs.items():
        cos = np.concatenate([r["embedding"]["per_token_cos"] for r in rs])
        rel = np.concatenate([r["embedding"]["per_token_rel_l2"] for r in rs])
        axes[0].hist(1 - cos, bins=30, alpha=0.5, color=COLORS[method], label=method)
        axes[1].hist(rel, bins=30, alpha=0.5, color=COLORS[method], label=method)
    axes[0].set_xlabel("1 - cos(e_0, e_T) per generated token")
    axes[1].set_xlabel("||e_T - e_0|| / ||e_0|| per generated token")
    for ax in axes:
        ax.legend()
    _save(fig, out / "fig9_embedding_shift.png")


def all_figures(runs: dict, traj_files: dict[str, Path], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    fig_norms(runs, out)
    fig_spectra(runs, out)
    fig_alignment(runs, out)
    fig_trajectories(traj_files, out)
    if "alpha" in runs["OPD"][0]:
        fig_reconstruction(runs, out)
        fig_alpha(runs, out)
        fig_early(runs, out)
        fig_window(runs, out)
        fig_embedding(runs, out)
    return sorted(out.glob("fig*.png"))
