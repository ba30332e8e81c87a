"""The study `zhbert probe` writes: does held-out MLM accuracy predict downstream accuracy?

One study per probe setting (probe.result_key): every checkpoint probed with that setting
(all of probe.jsonl's results of the key, not only one call's), joined with its MLM
accuracy from one `zhbert eval` setting, correlated and plotted into its own files, so
that probing another task or setting leaves the other studies as they were.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from zhbert.errors import UserError

# the study of `zhbert probe RUN --task sentiment` at the default settings (the README's)
DEFAULT_NAME = "probe_vs_mlm"


@dataclass(frozen=True)
class Point:
    step: int
    mlm_acc: float
    mlm_ci: tuple[float, float]
    probe_acc: float
    probe_ci: tuple[float, float]


def study_name(key: dict[str, Any], default: bool = False) -> str:
    """The files' stem (under RUN/probe) of the study of ``key``: DEFAULT_NAME for the default
    study, else named by task, mode and a hash of the whole key. One shared name made each
    call replace the study before it with only its own points."""
    if default:
        return DEFAULT_NAME
    task = re.sub(r"[^A-Za-z0-9._-]+", "_", key["task"]).strip("._")[:40] or "task"
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:8]
    return f"{DEFAULT_NAME}-{task}-{key['mode']}-{digest}"


# ----------------------------------------------------------------------------- MLM figures

def choose_eval_setting(by_cap: dict[int, dict[int, Any]], steps: set[int], default_cap: int) -> int:
    """The `zhbert eval` sequence cap whose records cover the most of ``steps``, the larger
    cap on a tie (more masked tokens, narrower intervals). Figures over different eval sets
    differ by more than the checkpoints do (0.062 on 12,724 masked tokens beside 0.090 on
    465), so a correlation across steps takes them all from one."""
    return max({default_cap, *by_cap}, key=lambda c: (len(steps & by_cap.get(c, {}).keys()), c))


def mlm_eval_summary(cap: int, evals: dict[int, dict[str, Any]], left_out: Sequence[int],
                     split: str = "validation") -> dict[str, Any]:
    """What the points' MLM accuracies were measured on, for the output and the study's JSON."""
    masked = sorted({r["eval_masked"] for r in evals.values() if "eval_masked" in r})
    return {"split": split, "max_sequences": cap,
            "eval_masked": masked[0] if len(masked) == 1 else masked, "left_out": list(left_out)}


def describe_mlm_eval(m: dict[str, Any]) -> str:
    masked = m["eval_masked"]
    if isinstance(masked, int):
        tokens = f"{masked:,}"
    else:  # one cap over differing eval sets (a rebuilt data dir): their range
        tokens = f"{masked[0]:,}-{masked[-1]:,}" if masked else "an unrecorded number of"
    text = (f"MLM accuracy of every point: {m['split']}, --max-sequences {m['max_sequences']:,} "
            f"({tokens} masked tokens)")
    if m["left_out"]:
        text += (f"; step(s) {', '.join(map(str, m['left_out']))} left out: no eval at that "
                 "setting and no checkpoint left to evaluate")
    return text


def join(probes: dict[int, dict[str, Any]], evals: dict[int, dict[str, Any]]) -> list[Point]:
    """Points of the probed steps that have an MLM record in ``evals`` (one eval setting)."""
    return [Point(s, evals[s]["eval_mlm_acc"], tuple(evals[s]["eval_mlm_acc_ci95"]),
                  probes[s]["accuracy"], tuple(probes[s]["ci95"]))
            for s in sorted(probes) if s in evals]


# ----------------------------------------------------------------------------- relation

def spearman_ci(rho: float, n: int) -> tuple[float, float] | None:
    """Fieller, Hartley & Pearson (1957): Fisher z with standard error sqrt(1.06 / (n - 3))."""
    if n <= 3 or not math.isfinite(rho):
        return None
    from scipy.stats import norm  # the normal quantile as analysis.stats takes it
    z = math.atanh(max(min(rho, 0.999999), -0.999999))
    half = norm.ppf(0.975) * math.sqrt(1.06 / (n - 3))
    return math.tanh(z - half), math.tanh(z + half)


def relate(points: Sequence[Point]) -> dict[str, Any]:
    """Pearson and Spearman correlation of MLM accuracy with probe accuracy across checkpoints."""
    from zhbert.analysis.stats import correlate
    out: dict[str, Any] = {"n": len(points)}
    if len(points) < 3:
        out["note"] = "fewer than 3 checkpoints: no correlation (probe more with --all-checkpoints)"
        return out
    try:
        c = correlate([p.mlm_acc for p in points], [p.probe_acc for p in points])
    except UserError as exc:  # e.g. a constant accuracy
        out["note"] = f"no correlation: {exc}"
        return out
    rho = c.spearman.statistic
    out["pearson"] = {"r": c.pearson.statistic, "ci95": list(c.pearson.ci95), "p": c.pearson.pvalue}
    out["spearman"] = {"rho": rho, "ci95": (list(spearman_ci(rho, len(points)))
                                            if spearman_ci(rho, len(points)) else None),
                       "p": c.spearman.pvalue}
    return out


def plot_probe_vs_mlm(points: Sequence[Point], task: str = "", ax=None, mlm: str = "validation"):
    """Held-out MLM accuracy (x) against downstream accuracy (y), 95% intervals, steps labelled."""
    from zhbert.plots import new_ax
    ax = ax if ax is not None else new_ax((6, 4.5))
    x, y = np.array([p.mlm_acc for p in points]), np.array([p.probe_acc for p in points])
    xerr = np.array([[p.mlm_acc - p.mlm_ci[0], p.mlm_ci[1] - p.mlm_acc] for p in points]).T
    yerr = np.array([[p.probe_acc - p.probe_ci[0], p.probe_ci[1] - p.probe_acc] for p in points]).T
    ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", capsize=3, color="tab:blue", ecolor="0.6")
    for p in points:
        ax.annotate(f"{p.step:,}", (p.mlm_acc, p.probe_acc), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    ax.set_xlabel(f"held-out MLM accuracy ({mlm})")
    ax.set_ylabel(f"{task} test accuracy" if task else "downstream test accuracy")
    ax.set_title("downstream accuracy vs MLM accuracy across checkpoints (95% CI)")
    ax.grid(alpha=0.3)
    return ax
