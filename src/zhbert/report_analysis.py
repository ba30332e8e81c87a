"""The study of one run, computed: ``analyze(history) -> Analysis`` (a result with ``.to_json()``).

Every figure comes from zhbert.analysis (correlate, fit_curve, predict_steps,
backtest, detect, summary); this module decides what to run and records what could
not be computed and why. Rendering it (charts, report.md/html, the summary lines) is
zhbert.report_render's; the ``zhbert analyze`` command is zhbert.report.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import numpy as np

from zhbert import __version__
from zhbert.analysis import (Anomaly, BacktestResult, CorrelationResult, CurveFit, History, Prediction,
                             backtest, correlate, detect, fit_curve, predict_steps, summary)
from zhbert.analysis.predict import check_target  # the bounds `zhbert predict` enforces
from zhbert.errors import UserError
from zhbert.metrics import metric_info

SCHEMA, VERSION = "zhbert-analysis", 1
DEFAULT_TARGET = 0.6          # for accuracy metrics when --target is not given
CORR_BOOT = 2000              # block-bootstrap resamples for r (vectorised, cheap)
MIN_BACKTEST_POINTS = 20
T = TypeVar("T")


@dataclass(frozen=True)
class Analysis:
    history: History
    metric: str
    x: str
    target: float | None
    n_boot: int
    corr: CorrelationResult | None
    corr_log: CorrelationResult | None       # metric vs log2(x)
    fits: dict[str, list[CurveFit]]          # metric -> fits sorted by AIC
    prediction: Prediction | None
    backtest: BacktestResult | None
    anomalies: tuple[Anomaly, ...]
    not_computed: tuple[tuple[str, str], ...]  # (what, why)
    outlook: Any = None                        # analysis.outlook.Outlook: the schedule-aware law's

    @property
    def series(self):
        return self.history.metric(self.metric).finite()[0]

    def to_json(self) -> dict[str, Any]:
        h = self.history
        return {"schema": SCHEMA, "version": VERSION, "zhbert_version": __version__,
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "run": h.meta.run, "source": h.to_json(), "x_axis": self.x,
                "metric_used": self.metric,
                "metric_reason": h.default_reason if self.metric == h.default_metric else "chosen with --metric",
                "n_boot": self.n_boot, "correlation": correlation_json(self.corr, self.corr_log),
                "summary": {name: {**summary(s), "best_fit": best_fit_json(self.fits.get(name))}
                            for name, s in h.series.items()},
                "target": self.target,
                "prediction": self.prediction.to_json() if self.prediction else None,
                "outlook": self.outlook.to_json() if self.outlook else None,
                "backtest": self.backtest.to_json() if self.backtest else None,
                "anomalies": [a.to_json() for a in self.anomalies],
                "not_computed": [{"what": w, "why": y} for w, y in self.not_computed]}


def correlation_json(c: CorrelationResult | None, log: CorrelationResult | None) -> dict | None:
    """The correlation figures under stable names (pearson.r, spearman.rho, ...)."""
    if c is None:
        return None
    j = c.to_json()
    out = {"n": j["n"],
           "pearson": {"r": j["pearson"]["statistic"], "r2": j["r2"], "p": j["pearson"]["pvalue"],
                       "ci95": j["pearson"]["ci95"], "method": j["pearson"]["method"]},
           "spearman": {"rho": j["spearman"]["statistic"], "p": j["spearman"]["pvalue"]},
           "kendall": {"tau": j["kendall"]["statistic"], "p": j["kendall"]["pvalue"]},
           "autocorrelation": {k: j[k] for k in ("rho1", "durbin_watson", "n_eff", "block", "n_boot")},
           "corrected": {"p": j["pearson_neff"]["pvalue"], "ci95": j["pearson_neff"]["ci95"],
                         "method": j["pearson_neff"]["method"],
                         "block_bootstrap_ci95": j["pearson_block"]["ci95"],
                         "block_bootstrap_method": j["pearson_block"]["method"]},
           "slope": j["slope"], "slope_neff": j["slope_neff"], "slope_unit": j["slope_unit"],
           "log_step": None}
    if log is not None:
        k = log.to_json()
        out["log_step"] = {"r": k["pearson"]["statistic"], "r2": k["r2"], "p": k["pearson"]["pvalue"],
                           "rho1": k["rho1"], "n_eff": k["n_eff"], "p_corrected": k["pearson_neff"]["pvalue"],
                           "ci95_corrected": k["pearson_neff"]["ci95"],
                           "slope_per_doubling": j["slope_log"]}
    return out


def best_fit_json(fits: list[CurveFit] | None) -> dict | None:
    """The chosen curve (lowest AIC) with the whole AIC ranking."""
    if not fits or not fits[0].ok:
        return None
    best = fits[0]
    return {**best.to_json(), "ranking": [
        {"model": f.name, "ok": f.ok, "aic": f.to_json()["aic"], "error": f.error,
         "delta_aic": f.aic - best.aic if f.ok else None} for f in fits]}


def _attempt(what: str, skipped: list, fn: Callable[[], T]) -> T | None:
    """Run one part of the analysis; a UserError becomes a 'could not compute' entry."""
    try:
        return fn()
    except UserError as exc:
        skipped.append((what, str(exc)))
        return None


def _fit_metrics(history: History, main: str, anomalies: list[Anomaly]) -> list[str]:
    """Learning curves worth fitting: accuracies and losses, not a task stuck at chance."""
    chance = {a.metric for a in anomalies if a.kind == "chance"}
    names = [n for n in history.series if n != main and n not in chance and metric_info(n).is_curve]
    return [main] + names


def analyze(history: History, *, x: str = "step", target: float | None = None, n_boot: int = 200,
            seed: int = 0) -> Analysis:
    """Run the study on ``history``'s default metric; parts that cannot be computed are
    listed in ``not_computed`` with the reason instead of failing the whole analysis."""
    skipped: list[tuple[str, str]] = []
    series, dropped = history.metric().finite()
    name = series.name
    # a target out of the metric's bounds (--target 2 for an accuracy) is a typo, refused as
    # `zhbert predict` refuses it, before minutes of fitting: not one more "not computed" line
    if target is not None:
        check_target(target, name)
    xs = series.x(x) if len(series) else np.array([])  # a missing axis is the user's to fix: raise
    if dropped:
        skipped.append((f"{dropped} point(s) of {name}", "non-finite (NaN/inf); left out of every statistic"))
    corr = _attempt("correlation", skipped, lambda: correlate(xs, series.y, n_boot=CORR_BOOT, seed=seed))
    pos = xs > 0
    corr_log = _attempt("log-step correlation", skipped,
                        lambda: correlate(np.log2(xs[pos]), series.y[pos], n_boot=CORR_BOOT, seed=seed))
    anomalies = detect(history)
    fits: dict[str, list[CurveFit]] = {}
    for m in _fit_metrics(history, name, anomalies):
        s, _ = history.series[m].finite()
        if (s.x(x) if m == name else _axis_or_none(s, x)) is None:
            skipped.append((f"curve fit of {m}", f"{m} does not record {x} for every point"))
            continue
        got = _attempt(f"curve fit of {m}", skipped, lambda: _fit_part(history, s, x, m, n_boot, seed))
        if got:
            fits[m] = got
    if target is None and metric_info(name).kind == "accuracy":
        target = DEFAULT_TARGET
    prediction = None
    if target is None:
        skipped.append(("prediction", f"{name} is not an accuracy; pass --target VALUE to predict it"))
    elif name in fits:
        prediction = _attempt("prediction", skipped, lambda: predict_steps(
            history, target, metric=name, x=x, n_boot=n_boot, seed=seed))
    else:
        skipped.append(("prediction", "no learning curve could be fitted (see above)"))
    bt = _backtest(history, series, name, x, skipped)
    look = _outlook(history, name, target, n_boot, skipped, seed)
    return Analysis(history, name, x, target, n_boot, corr, corr_log, fits, prediction, bt,
                    tuple(anomalies), tuple(skipped), look)


def _outlook(history: History, metric: str, target: float | None, n_boot: int,
             skipped: list, seed: int = 0) -> Any:
    """The schedule-aware law's forecast, where the run's lr is known and the metric is the
    accuracy or the loss the law forecasts (a target on it answered by the law:
    outlook._target_kind); else why not. Its bands come from the same
    ``n_boot`` bootstrap refits that ``zhbert predict --n-boot`` takes, so both commands give
    one answer (without them they came from the delta method: 1,893 steps here, 1,918 there)."""
    from zhbert.analysis.plan_runs import NoLearningRate
    from zhbert.metrics import ACC_METRICS, LOSS_METRICS
    from zhbert.analysis.outlook import outlook
    if metric not in ACC_METRICS + LOSS_METRICS:
        skipped.append(("schedule-aware forecast", f"the law forecasts MLM loss and accuracy, not {metric}"))
        return None
    try:  # a loss target by the law too, as predict answers it (outlook._target_kind)
        return outlook(history.meta.path, target, n_boot, seed, metric)  # analyze --seed's refits too
    except NoLearningRate as why:
        skipped.append(("schedule-aware forecast", f"{why}; the schedule-free families above stand alone"))
    except UserError as why:
        skipped.append(("schedule-aware forecast", str(why)))
    return None


def _backtest(history: History, series, name: str, x: str, skipped: list):
    """The curve families fitted to the first half of the points they may fit (after the
    length switch: History.curve_part) and scored on the rest."""
    part = history.after_switch(series)
    if len(part) < MIN_BACKTEST_POINTS:
        skipped.append(("backtest", f"needs {MIN_BACKTEST_POINTS}+ points of {name}"
                                    f"{history.switch_text}, have {len(part)}"))
        return None
    half = float(np.median(part.x(x)))
    return _attempt("backtest", skipped, lambda: backtest(history, half, metric=name, x=x))


def _fit_part(history: History, s, x: str, metric: str, n_boot: int, seed: int):
    """The curve families' fits of ``s`` over its points after the length switch
    (``History.curve_part``)."""
    part = history.curve_part(s)
    return fit_curve(part.x(x), part.y, n_boot=n_boot, seed=seed, metric=metric)


def _axis_or_none(series, x: str):
    try:
        return series.x(x)
    except UserError:
        return None


def eval_ci(history: History) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(step, low, high) of the held-out accuracy's recorded 95% CI (zhbert runs record it)."""
    s = history.series.get("eval_mlm_acc")
    if s is None or s.ci95 is None:
        return None
    s = s.select(np.isfinite(s.ci95).all(axis=1))
    return s.step, s.ci95[:, 0], s.ci95[:, 1]
