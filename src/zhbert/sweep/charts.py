"""The sweep report's charts (matplotlib, the CJK font set up by zhbert.plots).

Axes-level functions take ``ax=None`` and return the ``ax``; nothing here computes a
statistic: the rows, curves and importances come from sweep.report.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.axes import Axes

from zhbert.plots import new_ax

STATE_STYLE = {"COMPLETE": ("-", 1.4, None), "PRUNED": ("--", 1.0, "x"),
               "FAIL": (":", 1.0, None), "RUNNING": ("-.", 1.0, None)}


def plot_trial_curves(curves: Sequence[tuple[str, str, np.ndarray, np.ndarray]], metric: str,
                      best: str | None = None, ax: Axes | None = None) -> Axes:
    """Every trial's held-out curve; pruned ones dashed and ending in x, failed dotted,
    the best trial thick. ``curves``: (label, state, steps, values)."""
    ax = ax or new_ax((8, 5))
    for label, state, steps, values in curves:
        if len(steps) == 0:
            continue
        style, width, marker = STATE_STYLE.get(state, ("-", 1.0, None))
        lw = 2.6 if label == best else width
        line, = ax.plot(steps, values, style, lw=lw, alpha=0.9 if label == best else 0.65,
                        label=f"{label} ({state.lower()})" + (", best" if label == best else ""))
        if marker:
            ax.plot(steps[-1:], values[-1:], marker, color=line.get_color(), ms=8, mew=2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"held-out {metric}")
    ax.set_title("all trials (pruned: dashed, ending in x; failed: dotted)")
    ax.grid(alpha=0.3)
    # no curve drawn (no trial has an eval yet): matplotlib would warn about an empty legend
    if ax.get_legend_handles_labels()[0] and len(curves) <= 20:
        ax.legend(fontsize=7, ncol=2)
    return ax


def plot_history(points: Sequence[tuple[int, str, float]], maximize: bool, metric: str,
                 ax: Axes | None = None) -> Axes:
    """Optimisation history: each trial's final value (pruned: its last reported value,
    as x) by trial number, and the best finished value so far."""
    ax = ax or new_ax()
    done = [(n, v) for n, s, v in points if s == "COMPLETE"]
    pruned = [(n, v) for n, s, v in points if s == "PRUNED"]
    if done:
        n, v = np.array(done).T
        ax.plot(n, v, "o", color="tab:blue", label="complete")
        best = np.maximum.accumulate(v) if maximize else np.minimum.accumulate(v)
        ax.step(n, best, where="post", color="tab:red", label="best so far")
    if pruned:
        n, v = np.array(pruned).T
        ax.plot(n, v, "x", color="tab:gray", ms=8, mew=2, label="pruned (last value)")
    ax.set_xlabel("Optuna trial number")
    ax.set_ylabel(metric)
    ax.set_title("optimisation history")
    ax.grid(alpha=0.3)
    if done or pruned:
        ax.legend()
    return ax


def plot_importances(importances: dict[str, float], ax: Axes | None = None) -> Axes:
    ax = ax or new_ax((7, 0.5 + 0.45 * max(1, len(importances))))
    names = list(importances)[::-1]
    ax.barh(names, [importances[k] for k in names], color="tab:green")
    ax.set_xlabel("importance (Optuna PED-ANOVA, normalised)")
    ax.set_title("parameter importances")
    return ax
