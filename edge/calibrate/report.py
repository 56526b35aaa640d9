"""Reports people can read: a plain-text summary always, PNG plots when matplotlib is installed.

The plots are a DET curve (false non-match rate against false match rate, both
on log axes, with the chosen operating point) and the genuine and impostor
score histograms with the threshold marked. matplotlib comes with the
``report`` extra (``pip install 'facegate[report]'``); without it the summary
says how to get the plots and nothing fails. Both ``facegate calibrate`` and
``facegate eval`` write their reports here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, atomic_write_text
from .analysis import Calibration
from .stats import CONFIDENCE

log = logging.getLogger(__name__)

__all__ = ["PLOTS_HINT", "det_points", "format_calibration", "plots_available", "write_plots", "write_report"]

PLOTS_HINT = "PNG plots need matplotlib: pip install 'facegate[report]'"


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.2f} %"


def format_calibration(c: Calibration) -> str:
    """The summary ``facegate calibrate`` prints and keeps in ``summary.txt``."""
    ch = c.choice
    probes = sum(p.probes for p in c.people)
    was = ("the bundle's default" if c.previous_threshold is None else f"{c.previous_threshold:.4f}")
    verdict = "yes" if ch.supported else "NO"
    lines = [
        f"facegate calibrate: {c.model_id}, {len(c.people)} people enrolled, {probes} probe(s)",
        f"  threshold      {ch.threshold:.4f}   (before: {was})",
        f"  target FMR     {ch.target_fmr:g}   supported: {verdict} ({int(CONFIDENCE * 100)} % bound "
        f"{ch.fmr_upper:.2g} from {ch.impostor_comparisons:,} impostor comparisons, {ch.false_matches} false "
        f"match(es); {ch.needed:,} needed without one)",
        f"  FMR            {ch.fmr:.2g}",
        f"  FNMR           {_pct(ch.fnmr)}   ({ch.false_non_matches} of {ch.genuine_comparisons} genuine "
        f"comparisons refused; 95 % bound {_pct(ch.fnmr_upper)})",
        "  impostors      " + ", ".join(f"{k} {v:,}" for k, v in c.impostor_sources.items())
        + "; false matches " + ", ".join(f"{k} {v}" for k, v in c.extra.get("false_matches_by_source", {}).items()),
    ]
    if c.margin is not None:
        m = c.margin
        lines.append(f"  margin         {m.margin:.4f}   (1:K: the best person must be this much nearer than the "
                     f"runner-up; refuses {m.wrong} wrong and {m.correct_lost} of {m.correct} correct "
                     f"identifications seen)")
    if c.head is not None:
        h = c.head
        lines.append(f"  binary head    P(same) >= {1 - h.threshold:.4f}   FMR {h.fmr:.2g}, FNMR {_pct(h.fnmr)}, "
                     f"supported: {'yes' if h.supported else 'NO'}")
    if c.closest_pair is not None:
        a, b, d = c.closest_pair
        lines.append(f"  closest pair   {a} and {b}: {d:.4f} (nearest templates)")
    lines.append("  per person     name: matched/probes at the threshold, identified (1:K with margin), nearest other")
    for p in c.people:
        other = "-" if p.nearest_other is None else f"{p.nearest_other} {p.nearest_other_distance:.3f}"
        rate = "no probes" if p.rate is None else f"{p.matched}/{p.probes} ({100 * p.rate:.0f} %)"
        lines.append(f"                 {p.name}: {rate}, identified {p.identified}, nearest {other}")
    if c.advice:
        lines.append("  advice")
        lines.extend(f"   - {a}" for a in c.advice)
    return "\n".join(lines)


def plots_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def det_points(genuine: np.ndarray, impostor: np.ndarray, points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """(FMR, FNMR) along the score range, at most ``points`` thresholds (quantiles of all scores)."""
    from .stats import error_rates

    allscores = np.concatenate([np.asarray(genuine, np.float64), np.asarray(impostor, np.float64)])
    allscores = allscores[np.isfinite(allscores)]
    if allscores.size == 0:
        return np.zeros(0), np.zeros(0)
    t = np.unique(np.quantile(allscores, np.linspace(0, 1, points)))
    # the low tail of the impostors decides small FMRs: take their own lowest scores too
    imp = np.sort(np.asarray(impostor, np.float64))
    t = np.unique(np.concatenate([t, imp[: min(len(imp), points)]]))
    return error_rates(genuine, impostor, t)


def write_plots(folder: str | Path, genuine: np.ndarray, impostor: np.ndarray, threshold: float, title: str,
                score_name: str = "distance (accept <= threshold)") -> list[Path]:
    """det.png and scores.png in ``folder``; raises ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    g = np.asarray(genuine, np.float64)
    i = np.asarray(impostor, np.float64)
    g, i = g[np.isfinite(g)], i[np.isfinite(i)]
    written = []

    fmr, fnmr = det_points(g, i)
    op_fmr = np.count_nonzero(i <= threshold) / max(len(i), 1)
    op_fnmr = np.count_nonzero(g > threshold) / max(len(g), 1)
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=100)
    ok = (fmr > 0) & (fnmr > 0)
    ax.plot(fmr[ok], fnmr[ok], lw=1.6, color="tab:blue", label="DET")
    floor_x, floor_y = 1.0 / max(len(i), 1), 1.0 / max(len(g), 1)
    ax.plot([max(op_fmr, floor_x)], [max(op_fnmr, floor_y)], "o", color="tab:red",
            label=f"threshold {threshold:.3f}: FMR {op_fmr:.2g}, FNMR {op_fnmr:.2g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor_x / 2, 1)
    ax.set_ylim(floor_y / 2, 1)
    ax.set_xlabel(f"false match rate ({len(i):,} impostor comparisons)")
    ax.set_ylabel(f"false non-match rate ({len(g):,} genuine comparisons)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    written.append(_save(fig, folder / "det.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    lo = min(g.min() if len(g) else 0.0, i.min() if len(i) else 0.0)
    hi = max(g.max() if len(g) else 1.0, i.max() if len(i) else 1.0)
    bins = np.linspace(lo, hi, 80)
    for data, label, colour in ((g, "genuine", "tab:green"), (i, "impostor", "tab:orange")):
        if len(data):
            counts, edges = np.histogram(data, bins=bins)
            ax.stairs(counts / counts.sum(), edges, fill=True, alpha=0.5, color=colour,
                      label=f"{label} ({len(data):,})")
    ax.axvline(threshold, color="tab:red", ls="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel(score_name)
    ax.set_yscale("log")  # the impostors' low tail, where the threshold sits, is a tiny share
    ax.set_ylabel("share of comparisons (log)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, folder / "scores.png"))
    plt.close(fig)
    return written


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def write_report(folder: str | Path, summary: str, genuine: np.ndarray, impostor: np.ndarray, threshold: float,
                 title: str, score_name: str = "distance (accept <= threshold)") -> tuple[list[Path], str | None]:
    """summary.txt always, the plots when matplotlib is there; returns the files and a note (or None)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    note = None
    files = [folder / "summary.txt"]
    if plots_available():
        files += write_plots(folder, genuine, impostor, threshold, title, score_name)
    else:
        note = PLOTS_HINT
        summary = summary + "\n  (" + PLOTS_HINT + ")"
    atomic_write_text(folder / "summary.txt", summary + "\n")
    return files, note
