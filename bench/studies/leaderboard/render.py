"""Render the leaderboard: results/LEADERBOARD.md and a static, self-contained results/leaderboard.html.

One table per track (sortable in the HTML: click a header), one row per submitted entry, and an inline SVG
of each entry's step speedup over the track's reference with its 95% CI. The output depends only on the
submissions (no clock, no host), so it is reproducible and has a golden test.
"""

from __future__ import annotations

import html
from pathlib import Path

from bench.studies.leaderboard.reproduce import REPRODUCTIONS_DIR, status_of
from bench.studies.leaderboard.tracks import load_tracks
from core.io import atomic_write_text
from core.paths import RESULTS_DIR

DASH = "—"
COLUMNS = ("method", "model", "steps to target", "speedup vs ref (steps)", "speedup vs ref (wall, net)",
           "final acc", "train s / run", "validation s / run", "hardware", "commit", "date", "submitter", "status")
STATUS_NOTE = ("Status: `reproduced` when a maintainer re-ran the bundle at its commit and matched its steps to target "
               "and final accuracy (`python -m bench.leaderboard reproduce`), else `self-reported` (it passes "
               "validation, which a submitter can satisfy alone). Only reproduced entries can rank first.")


def _fmt(stat: dict | None, digits: int, suffix: str = "") -> str:
    if not stat or stat.get("mean") is None:
        return DASH
    text = f"{stat['mean']:.{digits}f}{suffix}"
    if stat.get("ci95"):
        lo, hi = stat["ci95"]
        text += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return text


def _mean(stat: dict | None):
    return None if not stat else stat.get("mean")


def rows_of(bundles: list[dict], track: str, statuses: dict[str, str] | None = None) -> list[dict]:
    """One flat row per submitted entry of the track's bundles, default order: reproduced entries first, then
    step speedup, best first (``statuses``: bundle id -> status; absent = self-reported)."""
    statuses = statuses or {}
    rows = []
    for b in bundles:
        if b["track"] != track:
            continue
        prov, student = b["provenance"], b["models"]["student"]
        hw = prov["hardware"]
        hardware = f"{hw['cpu_model']} ×{hw['cpu_count']}" + (f", {hw['gpu_count']}× {hw['gpu_model']}"
                                                               if hw["gpu_count"] else "")
        model = student["id"].split("/")[-1] + (f"@{student['revision'][:10]}" if student.get("revision") else "")
        wall = {c["method"]: [] for c in b["curves"]}
        for c in b["curves"]:
            wall[c["method"]].append(c["train_seconds"])
        for e in b["entries"]:
            if e["role"] != "submitted":
                continue
            m = e["metrics"]
            secs = wall.get(e["method"]) or []
            rows.append({
                "method": e["method"], "model": model, "reference": b["analysis"]["reference"],
                "steps": m["steps_to_target"], "speedup_steps": m["speedup_steps"], "speedup_wall": m["speedup_wall"],
                "final": m["final_accuracy"], "reached": e["reached_target"],
                "train_s": sum(secs) / len(secs) if secs else None, "hardware": hardware,
                "validation_s": m["validation_overhead_seconds"],
                "commit": prov["git"]["commit"][:10] + ("-dirty" if prov["git"]["dirty"] else ""),
                "date": b["submitted_at"][:10], "submitter": b["submitter"]["name"], "id": b["id"],
                "seeds": len(e["seeds"]), "status": statuses.get(b["id"], "self-reported"),
            })
    rows.sort(key=lambda r: (r["status"] != "reproduced", -(_mean(r["speedup_steps"]) or -1e9), r["method"], r["id"]))
    return rows


EVAL_COLUMNS = ("submission", "benchmark", "model", "samples", "temperature", "max new tokens", "avg@k", "pass@k")


def eval_rows(bundles: list[dict], track: str) -> list[list[str]]:
    """Attached `evals.run` results of the track's bundles (samples checked by the validator)."""
    out = []
    for b in bundles:
        if b["track"] != track:
            continue
        for ev in b.get("evals") or []:
            m, k = ev["metrics"], ev["metrics"]["k"]
            avg, pas = m.get(f"avg@{k}"), m.get(f"pass@{k}")
            model = ev["model"].split("/")[-1] or ev["model"]
            out.append([b["id"], ev["benchmark"], model, f"{m['n_problems']} × {ev['n']}",
                        f"{ev['temperature']:g}", str(ev["max_new_tokens"]),
                        DASH if avg is None else f"{avg:.3f} ± {m.get(f'avg@{k}_se') or 0:.3f} (k={k})",
                        DASH if pas is None else f"{pas:.3f}"])
    return out


def _cells(r: dict) -> list[tuple[str, object]]:
    """(text, sort value) per column."""
    return [
        (f"{r['method']} ({r['seeds']} seeds)", r["method"]),
        (r["model"], r["model"]),
        (_fmt(r["steps"], 1) + f" ({r['reached']})", _mean(r["steps"])),
        (_fmt(r["speedup_steps"], 2, "×"), _mean(r["speedup_steps"])),
        (_fmt(r["speedup_wall"], 2, "×"), _mean(r["speedup_wall"])),
        (_fmt(r["final"], 3), _mean(r["final"])),
        (DASH if r["train_s"] is None else f"{r['train_s']:.1f}", r["train_s"]),
        (_fmt(r["validation_s"], 1), _mean(r["validation_s"])),
        (r["hardware"], r["hardware"]),
        (r["commit"], r["commit"]),
        (r["date"], r["date"]),
        (r["submitter"], r["submitter"]),
        (r["status"], r["status"]),
    ]


def markdown(bundles: list[dict], tracks: dict, statuses: dict[str, str] | None = None) -> str:
    lines = ["# Leaderboard", "",
             "Generated by `python -m bench.leaderboard render` from the validated bundles in "
             "`results/leaderboard/submissions/` (submit with `python -m bench.submit`). Mean [95% CI] over seeds; "
             "speedups are per seed pair against the track's reference method.", "", STATUS_NOTE, ""]
    for name in sorted(tracks):
        spec = tracks[name]
        rows = rows_of(bundles, name, statuses)
        lines += [f"## {name}", "", spec["description"] + ".", "",
                  f"Target: {spec['target_fraction']:.0%} of {spec['reference']}'s final `{spec['metric']}`; "
                  f"at least {spec['min_seeds']} seeds, {spec['min_eval_problems']} eval problems × "
                  f"{spec['min_samples_per_problem']} samples.", ""]
        if not rows:
            lines += ["No submissions yet.", ""]
            continue
        lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        for r in rows:
            lines.append("| " + " | ".join(t.replace("|", "\\|") for t, _ in _cells(r)) + " |")
        lines.append("")
        evals = eval_rows(bundles, name)
        if evals:
            lines += ["Benchmark evals attached to these submissions (`python -m evals.run`; mean ± standard error):",
                      "", "| " + " | ".join(EVAL_COLUMNS) + " |", "|" + "---|" * len(EVAL_COLUMNS)]
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in e) + " |" for e in evals] + [""]
    return "\n".join(lines).rstrip() + "\n"


def speedup_svg(rows: list[dict], width: int = 700) -> str:
    """Dot-and-whisker chart of speedup_steps with its CI, one line per row; dashed line at 1×."""
    pts = [(r, r["speedup_steps"]) for r in rows if _mean(r["speedup_steps"]) is not None]
    if not pts:
        return ""
    row_h, left, right, top = 26, 250, 20, 24
    height = top + row_h * len(pts) + 30
    hi = max(max(s["ci95"][1] if s.get("ci95") else s["mean"] for _, s in pts), 1.0) * 1.1
    scale = (width - left - right) / hi

    def x(v: float) -> float:
        return round(left + max(v, 0.0) * scale, 1)

    out = [f'<p class="note">Steps-to-target speedup over {html.escape(rows[0]["reference"])}: mean and 95% CI '
           "over seed pairs.</p>",
           f'<svg xmlns="http://www.w3.org/2000/svg" class="speedup" width="{width}" height="{height}" '
           f'role="img" aria-label="step speedup with 95% CI">',
           f'<line x1="{x(1)}" y1="{top - 8}" x2="{x(1)}" y2="{height - 26}" stroke="#888" stroke-dasharray="4 3"/>',
           f'<text x="{x(1)}" y="{top - 12}" font-size="11" text-anchor="middle">1× (reference)</text>']
    for i, (r, s) in enumerate(pts):
        y = top + row_h * i + row_h // 2
        label = f"{r['method']} · {r['submitter']}"
        label = label if len(label) <= 34 else label[:33] + "…"
        out.append(f'<text x="{left - 8}" y="{y + 4}" font-size="12" text-anchor="end">{html.escape(label)}'
                   f'<title>{html.escape(r["id"])}</title></text>')
        if s.get("ci95"):
            lo, up = s["ci95"]
            out.append(f'<line x1="{x(lo)}" y1="{y}" x2="{x(up)}" y2="{y}" stroke="#1f77b4" stroke-width="2"/>')
        out.append(f'<circle cx="{x(s["mean"])}" cy="{y}" r="4" fill="#1f77b4"><title>{html.escape(_fmt(s, 2, "×"))}'
                   "</title></circle>")
    axis_y = height - 22
    out.append(f'<line x1="{left}" y1="{axis_y}" x2="{width - right}" y2="{axis_y}" stroke="#333"/>')
    step = 0.5 if hi <= 4 else 1.0 if hi <= 10 else 5.0
    v = 0.0
    while v <= hi + 1e-9:
        out.append(f'<text x="{x(v)}" y="{axis_y + 14}" font-size="10" text-anchor="middle">{v:g}×</text>')
        v += step
    out.append("</svg>")
    return "\n".join(out)


_SCRIPT = """
(function () {
  var errors = [];
  function report(msg) { errors.push(String(msg)); document.body.setAttribute('data-js-errors', errors.join(' | ')); }
  window.addEventListener('error', function (e) { report(e.message); });
  function key(td) {
    var v = td.getAttribute('data-v');
    if (v === null || v === '') return null;
    var n = Number(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }
  function sortTable(table, col, dir) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col]), y = key(b.cells[col]);
      if (x === null || y === null) return x === y ? 0 : (x === null ? 1 : -1);
      if (x < y) return dir === 'asc' ? -1 : 1;
      if (x > y) return dir === 'asc' ? 1 : -1;
      return 0;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    table.setAttribute('data-sorted-col', String(col));
    table.setAttribute('data-sorted-dir', dir);
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.setAttribute('aria-sort', i === col ? (dir === 'asc' ? 'ascending' : 'descending') : 'none');
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.board'), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.addEventListener('click', function () {
        var again = table.getAttribute('data-sorted-col') === String(i) && table.getAttribute('data-sorted-dir') === 'desc';
        sortTable(table, i, again ? 'asc' : 'desc');
      });
    });
  });
  // Test hook: leaderboard.html#click=T:C[,T:C...] clicks header C of table T, as a user would.
  var m = /click=([0-9:,]+)/.exec(window.location.hash);
  if (m) {
    m[1].split(',').forEach(function (spec) {
      var p = spec.split(':');
      document.querySelectorAll('table.board')[Number(p[0])].tHead.rows[0].cells[Number(p[1])].click();
    });
  }
  document.body.setAttribute('data-ready', '1');
})();
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table.board, table.evals { border-collapse: collapse; font-size: 13px; margin-bottom: 1em; }
table th, table td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
table.board th { background: #f3f3f3; cursor: pointer; user-select: none; }
table.board th[aria-sort=ascending]::after { content: " \\25B2"; }
table.board th[aria-sort=descending]::after { content: " \\25BC"; }
.note { color: #555; font-size: 13px; }
"""


def _attr(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(round(v, 6))
    return html.escape(str(v), quote=True)


def html_page(bundles: list[dict], tracks: dict, statuses: dict[str, str] | None = None) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             "<title>effopd-bench leaderboard</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
             "<h1>effopd-bench leaderboard</h1>",
             '<p class="note">Mean [95% CI] over seeds; speedups are per seed pair against the track\'s reference. '
             "Click a column header to sort. Built by <code>python -m bench.leaderboard render</code> from the "
             "validated bundles in <code>results/leaderboard/submissions/</code>.</p>",
             f'<p class="note">{html.escape(STATUS_NOTE).replace("`", "")}</p>']
    for name in sorted(tracks):
        spec = tracks[name]
        rows = rows_of(bundles, name, statuses)
        parts += [f'<h2 id="track-{html.escape(name)}">{html.escape(name)}</h2>',
                  f'<p class="note">{html.escape(spec["description"])}. Target: {spec["target_fraction"]:.0%} of '
                  f'{html.escape(spec["reference"])}\'s final <code>{html.escape(spec["metric"])}</code>; at least '
                  f'{spec["min_seeds"]} seeds.</p>']
        if not rows:
            parts.append('<p class="note">No submissions yet.</p>')
            continue
        parts.append(f'<table class="board" data-track="{html.escape(name)}">')
        parts.append("<thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS) + "</tr></thead>")
        parts.append("<tbody>")
        for r in rows:
            parts.append(f'<tr data-id="{html.escape(r["id"])}">' + "".join(
                f'<td data-v="{_attr(v)}">{html.escape(t)}</td>' for t, v in _cells(r)) + "</tr>")
        parts += ["</tbody>", "</table>", speedup_svg(rows)]
        evals = eval_rows(bundles, name)
        if evals:
            parts.append('<h3>Benchmark evals</h3><table class="evals"><thead><tr>' +
                         "".join(f"<th>{html.escape(c)}</th>" for c in EVAL_COLUMNS) + "</tr></thead><tbody>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in e) + "</tr>" for e in evals]
            parts.append("</tbody></table>")
    parts += [f"<script>{_SCRIPT}</script>", "</body>", "</html>"]
    return "\n".join(p for p in parts if p) + "\n"


def render(bundles: list[dict], out_dir: str | Path = RESULTS_DIR, tracks: dict | None = None,
           reproductions_dir: str | Path = REPRODUCTIONS_DIR) -> dict[str, Path]:
    tracks = tracks if tracks is not None else load_tracks()
    bundles = sorted(bundles, key=lambda b: (b["submitted_at"], b["id"]))
    statuses = {b["id"]: status_of(b, Path(reproductions_dir)) for b in bundles}
    out = Path(out_dir)
    paths = {"md": out / "LEADERBOARD.md", "html": out / "leaderboard.html"}
    atomic_write_text(paths["md"], markdown(bundles, tracks, statuses))
    atomic_write_text(paths["html"], html_page(bundles, tracks, statuses))
    return paths
