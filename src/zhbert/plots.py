"""Plots of a training history and of its analysis.

Axes-level functions take ``ax=None`` and return the ``ax`` they drew on (a new
figure when ``ax`` is None), like seaborn; figure-level functions
(``training_curves``, ``correlation_analysis``, ``loss_analysis``,
``prediction_figure``, ``comparison_figure``) return the ``Figure``. Nothing here
computes a statistic: smoothing, curve fits, bands, predictions and anomalies come
from ``zhbert.analysis`` and are only drawn.

Figures are plain ``matplotlib.figure.Figure`` objects (no pyplot): no global
figure list to leak, no GUI backend needed; ``savefig`` renders with Agg.
"""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from zhbert.analysis import Anomaly, CurveFit, CorrelationResult, History, Prediction, Series, smooth
from zhbert.errors import UserError
from zhbert.fileio import atomic_write_bytes
from zhbert.fonts import setup_cjk_font
from zhbert.metrics import BINARY_TASKS, HELD_OUT_ACC

setup_cjk_font()  # before any Text is created: text objects pick their font when made

DPI = 150
X_LABELS = {"step": "optimizer step", "tokens": "tokens seen", "seconds": "training time (s)",
            "characters": "characters of text seen"}
ANOMALY_COLORS = {"spike": "tab:red", "nonfinite": "black", "divergence": "darkred",
                  "plateau": "tab:gray", "chance": "tab:purple", "gap": "tab:orange"}
LOSS_NAMES = ("loss", "mlm_loss", "eval_mlm_loss")


# ----------------------------------------------------------------------------- helpers

def new_ax(figsize: tuple[float, float] = (7, 4.5)) -> Axes:
    return Figure(figsize=figsize, layout="constrained").subplots()


def xs_of(series: Series, x: str) -> np.ndarray | None:
    """The series' x values on axis ``x``, or None when it does not record that axis."""
    try:
        return series.x(x)
    except UserError:
        return None


def _titled(fig: Figure, title: str, subtitle: str | None) -> Figure:
    fig.suptitle(title if not subtitle else f"{title}\n{subtitle}")
    return fig


def _note(ax: Axes, text: str) -> Axes:
    """An empty panel that says why it is empty (a report must not silently drop a chart)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def _log_x(ax: Axes, xs: np.ndarray) -> None:
    if np.any(xs > 0):  # log scale hides x <= 0 (step 0); say nothing when nothing is left
        ax.set_xscale("log")


def save_figure(fig: Figure, out_dir: str | Path, name: str, dpi: int = DPI) -> list[Path]:
    """Write ``name.png`` (``dpi``) and ``name.svg`` atomically; returns the two paths."""
    paths = []
    for fmt in ("png", "svg"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi)
        path = Path(out_dir) / f"{name}.{fmt}"
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- curves

def plot_metric(series: Series, ax: Axes | None = None, *, x: str = "step", label: str | None = None,
                color: str | None = None, raw: bool = True, smoothed: bool = True,
                log_x: bool = False) -> Axes:
    """A metric over training: the raw points faint, the moving average (stats.smooth) bold.

    On a log x axis the first ``window`` smoothed points are not drawn: a moving
    average over a fixed number of points mixes steps 100 and 5,000 there, which a
    log axis stretches into a long, flat and false early curve."""
    ax = ax or new_ax()
    s, _ = series.finite()
    xs = xs_of(s, x)
    if xs is None or len(s) == 0:
        return ax
    label = label or s.name
    line = None
    if raw:
        (line,) = ax.plot(xs, s.y, lw=0.6, alpha=0.35 if smoothed and len(s) > 2 else 1.0,
                          color=color, marker="." if len(s) < 50 else None,
                          label=f"{label} (raw)" if smoothed else label)
        color = line.get_color()
    if smoothed and len(s) > 2:
        window = max(3, len(s) // 20)  # stats.smooth's default window, passed explicitly
        start = window if log_x and len(s) > 2 * window else 0
        ax.plot(xs[start:], smooth(s.y, window)[start:], lw=1.6, color=color, label=f"{label} (smoothed)")
    if log_x:
        _log_x(ax, xs)
    ax.set_xlabel(X_LABELS[x])
    return ax


def mark_anomalies(ax: Axes, anomalies: Iterable[Anomaly], history: History, *, x: str = "step",
                   metrics: Sequence[str] | None = None) -> Axes:
    """Shade each anomaly's step range (a line for a single step), colored by kind."""
    seen = set()
    for a in anomalies:
        if metrics is not None and a.metric not in metrics:
            continue
        s = history.series.get(a.metric) or history.series.get(history.default_metric)
        xs = xs_of(s, x) if s is not None else None
        if xs is None or not math.isfinite(a.start):
            continue
        lo, hi = np.interp([a.start, a.end], s.step, xs)  # anomalies are in steps
        color = ANOMALY_COLORS.get(a.kind, "tab:brown")
        label = None if a.kind in seen else f"anomaly: {a.kind}"
        seen.add(a.kind)
        if hi > lo:
            ax.axvspan(lo, hi, color=color, alpha=0.12, label=label)
        else:
            ax.axvline(lo, color=color, lw=1, ls=":", label=label)
    return ax


def plot_accuracy(history: History, ax: Axes | None = None, *, x: str = "step",
                  eval_ci: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                  anomalies: Sequence[Anomaly] = ()) -> Axes:
    """MLM accuracy: training batches (raw + smoothed) and held-out with its CI band.
    ``eval_ci`` is (step, low, high) as recorded by the trainer (Wilson intervals)."""
    ax = ax or new_ax()
    # held-out: zhbert's, else a Trainer's eval_accuracy (metrics.HELD_OUT_ACC, one home)
    train = history.series.get("mlm_acc")
    held = next((history.series[n] for n in HELD_OUT_ACC if n in history.series), None)
    if train is None and held is None:
        return _note(ax, "no MLM accuracy recorded")
    if train is not None:
        plot_metric(train, ax, x=x, label="train batches", color="tab:blue")
    if held is not None:
        s, _ = held.finite()
        xs = xs_of(s, x)
        if xs is not None:
            ax.plot(xs, s.y, "o-", ms=3, lw=1.2, color="tab:orange", label="held-out")
            if eval_ci is not None and len(eval_ci[0]):
                cx = np.interp(eval_ci[0], s.step, xs)
                ax.fill_between(cx, eval_ci[1], eval_ci[2], color="tab:orange", alpha=0.25,
                                label="held-out 95% CI")
    mark_anomalies(ax, anomalies, history, x=x, metrics=("mlm_acc", "eval_mlm_acc", "mlm_acc-eval_mlm_acc"))
    ax.set(title="MLM accuracy", ylabel="accuracy", xlabel=X_LABELS[x])
    ax.legend(fontsize=7, loc="lower right")
    return ax


def plot_binary_tasks(history: History, ax: Axes | None = None, *, x: str = "step",
                      anomalies: Sequence[Anomaly] = ()) -> Axes:
    """NSP/SOP accuracy against the 50% a coin flip gets."""
    ax = ax or new_ax()
    names = [n for n in BINARY_TASKS if n in history.series and len(history.series[n].finite()[0])]
    if not names:
        return _note(ax, "no NSP/SOP accuracy recorded")
    for name in names:
        plot_metric(history.series[name], ax, x=x)
    ax.axhline(0.5, color="tab:purple", ls="--", lw=1, label="chance (50%)")
    mark_anomalies(ax, anomalies, history, x=x, metrics=names)
    ax.set(title="NSP / SOP accuracy", ylabel="accuracy", xlabel=X_LABELS[x])
    ax.legend(fontsize=7, loc="best")
    return ax


def plot_lr(history: History, ax: Axes | None = None, *, x: str = "step") -> Axes:
    ax = ax or new_ax()
    if "lr" not in history.series:
        return _note(ax, "no learning rate recorded")
    plot_metric(history.series["lr"], ax, x=x, smoothed=False, label="learning rate", color="tab:green")
    ax.set(title="Learning rate", ylabel="lr", xlabel=X_LABELS[x])
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    return ax


def loss_name(history: History) -> str | None:
    return next((n for n in LOSS_NAMES if n in history.series), None)


def plot_loss(history: History, ax: Axes | None = None, *, x: str = "step",
              anomalies: Sequence[Anomaly] = (), log_x: bool = False, name: str | None = None) -> Axes:
    """Loss raw + smoothed, with spikes / non-finite points / divergence marked."""
    ax = ax or new_ax()
    name = name or loss_name(history)
    if name is None or name not in history.series:
        return _note(ax, "no loss recorded")
    s = history.series[name]
    plot_metric(s, ax, x=x, label=name, color="tab:red" if name == "loss" else None, log_x=log_x)
    mark_anomalies(ax, anomalies, history, x=x, metrics=(name,))
    ax.set(title=f"{name}" + (" (log x)" if log_x else ""), ylabel="loss", xlabel=X_LABELS[x])
    ax.legend(fontsize=7, loc="upper right")
    return ax


def training_curves(history: History, *, x: str = "step", anomalies: Sequence[Anomaly] = (),
                    eval_ci: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                    subtitle: str | None = None) -> Figure:
    """The seed's 4-in-1 chart, done right: loss, MLM accuracy (train and held-out),
    NSP/SOP against chance, learning rate."""
    fig = Figure(figsize=(13, 9), layout="constrained")
    (a, b), (c, d) = fig.subplots(2, 2)
    plot_loss(history, a, x=x, anomalies=anomalies)
    plot_accuracy(history, b, x=x, eval_ci=eval_ci, anomalies=anomalies)
    plot_binary_tasks(history, c, x=x, anomalies=anomalies)
    plot_lr(history, d, x=x)
    return _titled(fig, f"Training curves: {history.meta.run}", subtitle)


def loss_analysis(history: History, *, x: str = "step", anomalies: Sequence[Anomaly] = (),
                  subtitle: str | None = None) -> Figure:
    """Loss on a log x axis (early and late training both visible) and its components."""
    fig = Figure(figsize=(13, 5), layout="constrained")
    a, b = fig.subplots(1, 2)
    plot_loss(history, a, x=x, anomalies=anomalies, log_x=True)
    parts = [n for n in ("mlm_loss", "nsp_loss", "eval_mlm_loss") if n in history.series]
    if parts:
        for n in parts:
            plot_metric(history.series[n], b, x=x, raw=len(history.series[n]) <= 2, log_x=True)
        mark_anomalies(b, anomalies, history, x=x, metrics=parts)
        b.set(title="loss components (smoothed, log x)", ylabel="loss")
        b.legend(fontsize=7)
    else:
        plot_loss(history, b, x=x, anomalies=anomalies)
    return _titled(fig, f"Loss: {history.meta.run}", subtitle)


# ----------------------------------------------------------------------------- fits

def _grid(xs: np.ndarray, end: float | None = None, n: int = 300,
          fit: CurveFit | None = None) -> np.ndarray:
    """x values to draw a fit at: from where ``fit`` was fitted (after a length switch, the
    points past it: History.curve_part; drawn back over the short phase, a power fit read
    -0.99 accuracy at step 25) or the first x > 0, to ``end`` or the last x."""
    lo = max(float(np.min(xs[xs > 0])) if np.any(xs > 0) else 1.0, 1e-9)
    if fit is not None and fit.ok:
        lo = max(lo, float(fit.x_range[0]))
    return np.linspace(lo, end or float(np.max(xs)), n)


def _fit_label(fit: CurveFit) -> str:
    return f"{fit.name}: {fit.model.formula}"


def plot_fit(series: Series, fits: Sequence[CurveFit], ax: Axes | None = None, *, x: str = "step",
             corr: CorrelationResult | None = None) -> Axes:
    """Scatter of the metric, the straight line (the seed's model) and the best curve
    by AIC with its 95% bootstrap band."""
    ax = ax or new_ax()
    s, _ = series.finite()
    xs = s.x(x)
    ax.scatter(xs, s.y, s=4, alpha=0.4, color="tab:blue", label=s.name)
    ok = [f for f in fits if f.ok]
    best = ok[0] if ok else None  # fit_curve sorts by AIC
    grid = _grid(xs, fit=best)
    if best is not None:
        lo, hi = best.band(grid)
        ax.fill_between(grid, lo, hi, color="tab:red", alpha=0.2, label="95% band (bootstrap refits)")
        ax.plot(grid, best.predict(grid), color="tab:red", lw=2, label=f"best by AIC, {_fit_label(best)}")
    line = next((f for f in ok if f.name == "linear"), None)
    if line is not None and line is not best:
        r = f" (Pearson r = {corr.statistic:.3f})" if corr is not None else ""
        ax.plot(grid, line.predict(grid), color="gray", ls="--", lw=1.5, label=f"straight line{r}")
    ax.set(xlabel=X_LABELS[x], ylabel=s.name, title=f"{s.name} vs {x}")
    ax.legend(fontsize=7, loc="lower right")
    return ax


def plot_residuals(series: Series, fits: Sequence[CurveFit], ax: Axes | None = None, *,
                   x: str = "step") -> Axes:
    """Residuals of the straight line and of the best curve: a wrong shape shows as a
    systematic arc, autocorrelation as long runs on one side of zero."""
    ax = ax or new_ax()
    s, _ = series.finite()
    xs = s.x(x)
    ok = [f for f in fits if f.ok]
    picks = [f for f in ok if f.name == "linear"] + [f for f in ok[:1] if f.name != "linear"]
    for f, color in zip(picks, ("gray", "tab:red")):
        on = xs >= f.x_range[0]  # where it was fitted (after a length switch: past it)
        ax.plot(xs[on], s.y[on] - f.predict(xs[on]), lw=0.7, color=color, alpha=0.8,
                label=f"{f.name} (rho1 = {f.rho1:.2f})")
    ax.axhline(0, color="black", lw=0.8)
    ax.set(xlabel=X_LABELS[x], ylabel="residual", title="residuals")
    if picks:
        ax.legend(fontsize=7, loc="lower right")
    return ax


def correlation_analysis(series: Series, fits: Sequence[CurveFit], corr: CorrelationResult | None,
                         *, x: str = "step", subtitle: str | None = None) -> Figure:
    fig = Figure(figsize=(10, 8), layout="constrained")
    a, b = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1.3))
    plot_fit(series, fits, a, x=x, corr=corr)
    plot_residuals(series, fits, b, x=x)
    title = f"Correlation analysis: {series.name}"
    if corr is not None:
        # with n_eff <= 3 the corrected interval is undefined (Estimate.ci95 is None)
        ci = corr.pearson_neff.ci95
        ci_text = "undefined" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"
        title += (f"  (r = {corr.statistic:.3f}; corrected 95% CI {ci_text}, "
                  f"n_eff = {corr.n_eff:.1f} of {corr.n})")
    return _titled(fig, title, subtitle)


def plot_prediction(series: Series, fit: CurveFit, prediction: Prediction, ax: Axes | None = None,
                    *, x: str = "step") -> Axes:
    """The fit extrapolated towards the target, its band, the target line and the
    predicted interval; the fitted ceiling with its CI when the target is out of reach."""
    ax = ax or new_ax()
    s, _ = series.finite()
    xs = s.x(x)
    last = float(xs.max())
    q = prediction.x
    end = last * 1.5
    if q is not None and math.isfinite(q.value):
        ends = [v for v in (q.value, q.interval95[1]) if math.isfinite(v)]
        end = min(max([end] + [1.15 * v for v in ends]), 10 * last)  # keep the data readable
    plot_metric(s, ax, x=x, color="tab:blue")
    grid = _grid(xs, end, fit=fit)
    lo, hi = fit.band(grid)  # clipped to the metric's range (an accuracy's line past 100%)
    ax.fill_between(grid, lo, hi, color="tab:red", alpha=0.2, label="95% band of the fit")
    ax.plot(grid, fit.predict(grid), color="tab:red", lw=2, label=f"{fit.name} fit")
    ax.axvline(last, color="black", lw=0.8, ls=":", label="end of data")
    ax.axhline(prediction.target, color="tab:green", ls="--", lw=1.2, label=f"target {prediction.target:g}")
    if q is not None and prediction.already_reached_at is None:
        for (a, b), alpha, lvl in ((q.interval95, 0.10, "95%"), (q.interval80, 0.18, "80%")):
            ax.axvspan(a, min(b, end), color="tab:green", alpha=alpha, label=f"{lvl} interval"
                       + (" (open-ended)" if not math.isfinite(b) else ""))
        ax.axvline(q.value, color="tab:green", lw=1.5)
    elif q is not None:
        ax.axvline(q.value, color="tab:green", lw=1.5, label="reached (smoothed)")
    elif prediction.asymptote is not None:
        ax.axhline(prediction.asymptote, color="tab:red", ls="-.", lw=1.2,
                   label=f"fitted ceiling {prediction.asymptote:.3f}")
        if prediction.asymptote_ci95:
            ax.axhspan(*prediction.asymptote_ci95, color="tab:red", alpha=0.12, label="ceiling 95% CI")
    ax.set(xlabel=X_LABELS[x], ylabel=s.name, title=textwrap.fill(prediction.message, 90))
    ax.legend(fontsize=7, loc="lower right")
    return ax


def plot_outlook(o: Any, ax: Axes | None = None) -> Axes:
    """The schedule-aware forecast (analysis.outlook.Outlook): the run's held-out accuracy,
    the law's curve along its own schedule and along the same schedule stretched to a longer
    run (80% bands), the target and the steps it needs."""
    ax = ax or new_ax()
    ax.plot(o.observed["step"], o.observed["acc"], ".", ms=3, color="tab:blue", label=f"{o.acc_metric} (measured)")
    for c, color, label in ((o.current, "tab:red", f"this schedule ({o.planned:,} steps)"),
                            (o.stretched, "tab:purple", f"stretched to {o.longer:,} steps")):
        if "acc" in c:
            ax.fill_between(c["step"], c["acc_lo80"], c["acc_hi80"], color=color, alpha=0.15)
            ax.plot(c["step"], c["acc"], color=color, lw=1.8, label=label + " (law, 80% band)")
    r = o.reach
    if r is not None:
        ax.axhline(r.target, color="tab:green", ls="--", lw=1.2, label=f"target {r.target:g}")
        if r.reachable and r.steps is not None and math.isfinite(r.steps):
            ax.axvline(r.steps, color="tab:green", lw=1.5, label=f"a {r.steps:,.0f}-step run reaches it")
    ax.set(xlabel="step", ylabel=o.acc_metric, title=textwrap.fill(r.message if r else o.method, 90))
    ax.legend(fontsize=7, loc="lower right")
    return ax


def prediction_figure(series: Series, fit: CurveFit | None, prediction: Prediction | None, *,
                      x: str = "step", subtitle: str | None = None, outlook: Any = None) -> Figure:
    """The schedule-free families' prediction and, where the run's lr is known, the
    schedule-aware law's outlook beside it."""
    panels = int(prediction is not None and fit is not None) + int(outlook is not None)
    fig = Figure(figsize=(10 * max(panels, 1), 6), layout="constrained")
    axes = list(np.atleast_1d(fig.subplots(1, max(panels, 1))))
    if prediction is not None and fit is not None:
        plot_prediction(series, fit, prediction, axes.pop(0), x=x)
    if outlook is not None:
        plot_outlook(outlook, axes.pop(0))
    target = prediction.target if prediction is not None else outlook.reach.target if outlook and outlook.reach else None
    return _titled(fig, f"Prediction: {series.name}" + (f" reaching {target:g}" if target is not None else ""), subtitle)


# ----------------------------------------------------------------------------- comparison

def plot_comparison(runs: Sequence[tuple[str, Series]], ax: Axes | None = None, *, x: str = "step",
                    common: tuple[float, float] | None = None) -> Axes:
    """Runs overlaid on one axis; the range every run covers is shaded."""
    ax = ax or new_ax()
    for i, (name, s) in enumerate(runs):
        plot_metric(s, ax, x=x, label=name, color=f"C{i}")
    if common is not None:
        ax.axvspan(*common, color="gray", alpha=0.08, label="common range")
    ax.set(xlabel=X_LABELS[x], ylabel=runs[0][1].name if runs else "")
    ax.legend(fontsize=7, loc="best")
    return ax


def plot_difference(runs: Sequence[tuple[str, Series]], ax: Axes | None = None, *, x: str = "step",
                    common: tuple[float, float] | None = None) -> Axes:
    """Each run's smoothed metric minus the first run's, on the first run's x values
    inside the common range (a difference outside it would compare against nothing)."""
    ax = ax or new_ax()
    if len(runs) < 2 or common is None:
        return _note(ax, "needs two runs with an overlapping range")
    base_name, base = runs[0][0], runs[0][1].finite()[0]
    bx = base.x(x)
    inside = (bx >= common[0]) & (bx <= common[1])
    if inside.sum() < 2:
        return _note(ax, "the runs overlap in fewer than 2 points")
    bsm = smooth(base.y)[inside]
    for i, (name, s) in enumerate(runs[1:], 1):
        s, _ = s.finite()
        ax.plot(bx[inside], np.interp(bx[inside], s.x(x), smooth(s.y)) - bsm, color=f"C{i}",
                label=f"{name} - {base_name}")
    ax.axhline(0, color="black", lw=0.8)
    ax.set(xlabel=X_LABELS[x], ylabel=f"difference in {base.name}", title="difference (smoothed, common range)")
    ax.legend(fontsize=7, loc="best")
    return ax


def comparison_figure(runs: Sequence[tuple[str, Series]], *, x: str = "step",
                      common: tuple[float, float] | None = None, subtitle: str | None = None) -> Figure:
    fig = Figure(figsize=(13, 5), layout="constrained")
    a, b = fig.subplots(1, 2, width_ratios=(3, 2))
    plot_comparison(runs, a, x=x, common=common)
    plot_difference(runs, b, x=x, common=common)
    name = runs[0][1].name if runs else ""
    return _titled(fig, f"Comparison of {len(runs)} runs: {name} by {x}", subtitle)
