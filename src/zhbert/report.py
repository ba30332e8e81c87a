"""``zhbert analyze``: the study of one run as analysis.json, plots and a report.

    zhbert analyze runs/base                   # -> runs/base/analysis/
    zhbert analyze seed_history.json --target 0.6 --out study/

Every figure comes from zhbert.analysis (correlate, fit_curve, predict_steps,
backtest, detect, summary); this module only decides what to run, records what
could not be computed and why, and writes it out. The output directory is staged
(fileio.staged_dir): a reader never sees half an analysis.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from zhbert import __version__
from zhbert.analysis import (Anomaly, BacktestResult, CorrelationResult, CurveFit, History, Prediction,
                             backtest, correlate, detect, fit_curve, load_history, predict_steps, summary)
from zhbert.analysis.history import _read_jsonl
from zhbert.analysis.predict import add_input_arguments
from zhbert.errors import UserError
from zhbert.fileio import atomic_write_json, atomic_write_text, staged_dir
from zhbert.metrics import metric_info

SCHEMA, VERSION = "zhbert-analysis", 1
DEFAULT_TARGET = 0.6          # for accuracy metrics when --target is not given
CORR_BOOT = 2000              # block-bootstrap resamples for r (vectorised, cheap)
MIN_BACKTEST_POINTS = 20
ZH_X = {"step": "训练步数", "tokens": "训练词元数", "seconds": "训练时间"}
T = TypeVar("T")


def zh_subtitle(run: str, metric: str, x: str) -> str:
    """The Chinese line under each title: run name, metric, axis."""
    return f"运行 {run}：{metric_info(metric).zh}与{ZH_X[x]}的关系"


# ----------------------------------------------------------------------------- the analysis

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
        mx = s.x(x) if m == name else _axis_or_none(s, x)
        if mx is None:
            skipped.append((f"curve fit of {m}", f"{m} does not record {x} for every point"))
            continue
        got = _attempt(f"curve fit of {m}", skipped,
                       lambda: fit_curve(mx, s.y, n_boot=n_boot, seed=seed, metric=m))
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
    bt = None
    if len(series) >= MIN_BACKTEST_POINTS:
        bt = _attempt("backtest", skipped, lambda: backtest(history, float(np.median(xs)), metric=name, x=x))
    else:
        skipped.append(("backtest", f"needs {MIN_BACKTEST_POINTS}+ points of {name}, have {len(series)}"))
    return Analysis(history, name, x, target, n_boot, corr, corr_log, fits, prediction, bt,
                    tuple(anomalies), tuple(skipped))


def _axis_or_none(series, x: str):
    try:
        return series.x(x)
    except UserError:
        return None


def eval_ci(history: History) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(step, low, high) of the held-out accuracy's recorded 95% CI (zhbert runs only)."""
    if history.meta.source not in ("zhbert", "ckpt_eval"):
        return None
    path = Path(history.meta.path)
    files = [path / "history.jsonl", path / "checkpoint_eval.jsonl"] if path.is_dir() else [path]
    cis: dict[float, tuple[float, float]] = {}
    for f in files:
        if f.exists():
            for obj in _read_jsonl(f, []):
                ci = obj.get("eval_mlm_acc_ci95")
                if isinstance(ci, list) and len(ci) == 2 and isinstance(obj.get("step"), (int, float)):
                    cis.setdefault(float(obj["step"]), (float(ci[0]), float(ci[1])))
    if not cis:
        return None
    steps = np.array(sorted(cis))
    lo, hi = np.array([cis[s] for s in steps]).T
    return steps, lo, hi


# ----------------------------------------------------------------------------- plots

def make_plots(a: Analysis, out: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Write the four charts (PNG + SVG); returns the file names and what was skipped."""
    from zhbert import plots

    h, x, sub = a.history, a.x, zh_subtitle(a.history.meta.run, a.metric, a.x)
    series, fits = a.series, a.fits.get(a.metric, [])
    jobs: dict[str, Callable[[], Any]] = {
        "training_curves": lambda: plots.training_curves(h, x=x, anomalies=a.anomalies,
                                                         eval_ci=eval_ci(h), subtitle=sub),
        "correlation_analysis": lambda: plots.correlation_analysis(series, fits, a.corr, x=x, subtitle=sub),
        "loss_analysis": lambda: plots.loss_analysis(h, x=x, anomalies=a.anomalies, subtitle=sub),
    }
    if a.prediction is not None and fits:
        fit = next(f for f in fits if f.name == a.prediction.model)
        jobs["prediction"] = lambda: plots.prediction_figure(series, fit, a.prediction, x=x, subtitle=sub)
    names, skipped = [], []
    if len(series) == 0:
        return [], [("plots", f"{a.metric} has no finite values to draw")]
    for name, make in jobs.items():
        fig = _attempt(f"{name} plot", skipped, make)
        if fig is not None:
            plots.save_figure(fig, out, name)
            names.append(name)
    if "prediction" not in jobs:
        skipped.append(("prediction plot", "no prediction was computed"))
    return names, skipped


# ----------------------------------------------------------------------------- report text

def fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, str):
        return "never" if v == "inf" else v  # Prediction.to_json writes an infinite step as "inf"
    if isinstance(v, float) and math.isinf(v):
        return "never"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt(u, digits) for u in v) + "]"
    if isinstance(v, int) or abs(v) >= 1000 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "-"
    return "< 1e-300" if p == 0 else f"{p:.2g}"


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _summary_md(j: dict) -> list[str]:
    rows = []
    for name, s in j["summary"].items():
        bf = s["best_fit"] or {}
        asym = (f"{fmt(bf['asymptote'])} {fmt(bf['asymptote_ci95'])}" if bf.get("asymptote") is not None else "-")
        rows.append([name, s["n"], s["first"], s["last"], s["mean"], s["min"], s["max"], s["std"],
                     bf.get("model", "-"), asym])
    return ["## Summary", "", md_table(["metric", "n", "first", "last", "mean", "min", "max", "std",
                                        "best curve (AIC)", "asymptote [95% CI]"], rows)]


def _correlation_md(j: dict) -> list[str]:
    c = j["correlation"]
    if c is None:
        return ["## Correlation", "", "Not computed (see *Not computed* below)."]
    p, ac, cor = c["pearson"], c["autocorrelation"], c["corrected"]
    rows = [["Pearson r", fmt(p["r"]), fmt(p["r"])], ["R²", fmt(p["r2"]), fmt(p["r2"])],
            ["points used for inference", c["n"], fmt(ac["n_eff"], 1)],
            ["p-value", fmt_p(p["p"]), fmt_p(cor["p"])],
            ["95% CI of r", fmt(p["ci95"]), fmt(cor["ci95"])],
            ["95% CI of r, moving-block bootstrap", "-", fmt(cor["block_bootstrap_ci95"])],
            [f"slope per {c['slope_unit']:,} {j['x_axis']}s [95% CI]",
             f"{fmt(c['slope']['statistic'])} {fmt(c['slope']['ci95'])}",
             f"{fmt(c['slope_neff']['statistic'])} {fmt(c['slope_neff']['ci95'])}"]]
    text = ["## Correlation: naive vs autocorrelation-corrected", "",
            f"The seed reported Pearson r with a p-value and CI that assume {c['n']} independent points. "
            f"Consecutive points of a learning curve are not independent: the residuals of the straight "
            f"line have lag-1 autocorrelation rho1 = {fmt(ac['rho1'], 3)} (Durbin-Watson "
            f"{fmt(ac['durbin_watson'], 3)}; 2 means none), so the data carry about n_eff = "
            f"{fmt(ac['n_eff'], 1)} independent points. The corrected column uses n_eff "
            f"({cor['method']}) and a moving-block bootstrap (block {ac['block']}).", "",
            md_table(["", "naive (scipy, independent points)", "autocorrelation-corrected"], rows), "",
            f"Rank correlations: Spearman rho = {fmt(c['spearman']['rho'])}, "
            f"Kendall tau = {fmt(c['kendall']['tau'])} (their p-values assume independence too)."]
    lg = c["log_step"]
    if lg:
        sl = lg["slope_per_doubling"]
        text += ["", f"Against log2({j['x_axis']}): r = {fmt(lg['r'])} (R² {fmt(lg['r2'])}), corrected "
                 f"95% CI {fmt(lg['ci95_corrected'])} with n_eff = {fmt(lg['n_eff'], 1)}; "
                 f"{fmt(sl['statistic'])} per doubling of {j['x_axis']}. A saturating curve is closer "
                 "to a straight line in log x than in x, and neither r says when training will stop improving: "
                 "the curve fits below do."]
    return text


def _fit_md(a: Analysis, j: dict) -> list[str]:
    bf = j["summary"][a.metric]["best_fit"]
    out = ["## Learning-curve fit and prediction", ""]
    if bf is None:
        return out + ["No learning-curve model could be fitted (see *Not computed*)."]
    rows = [[r["model"], "ok" if r["ok"] else f"failed: {r['error']}", r["aic"],
             "-" if r["delta_aic"] is None else f"{r['delta_aic']:.1f}"]
            for r in bf["ranking"]]
    out += [f"Models fitted to {a.metric} with scipy `curve_fit`, ranked by AIC; uncertainty from "
            f"{bf['n_boot']} bootstrap refits ({bf.get('bootstrap') or 'residual bootstrap'}).", "",
            md_table(["model", "status", "AIC", "ΔAIC"], rows), "",
            f"Best: **{bf['model']}** `{bf['formula']}`"
            + (f", asymptote {fmt(bf['asymptote'])} (95% CI {fmt(bf['asymptote_ci95'])})"
               if bf["asymptote"] is not None else "") + "."]
    p = j["prediction"]
    if p:
        out += ["", f"**Prediction for target {p['target']:g}:** {p['message']}."]
        if p["by_model"]:
            out += ["", "Each model's answer: " + ", ".join(f"{k} {fmt(v)}" for k, v in p["by_model"].items())
                    + f" ({j['x_axis']})."]
        out += [f"- note: {n}" for n in p["notes"]]
    return out


def _backtest_md(j: dict) -> list[str]:
    b = j["backtest"]
    if not b:
        return []
    rows = [[m["model"], m["mae"], m["max_error"], m["error_last"], m["pred_last"]] for m in b["models"] if m["ok"]]
    return ["## Backtest", "",
            f"Each model fitted on {b['x_axis']} <= {fmt(b['fit_until'])} ({b['n_fit']} points) and scored "
            f"on the remaining {b['n_test']} points against the smoothed metric "
            f"(smoothed value at the end: {fmt(b['actual_last_smoothed'])}; + = too optimistic).", "",
            md_table(["model", "MAE", "max error", "error at last point", "predicted at last point"], rows), "",
            f"Best on the held-back part: **{b['winner']}**; best by AIC on the fitted part: {b['aic_best']}."]


def _anomalies_md(j: dict) -> list[str]:
    if not j["anomalies"]:
        return ["## Anomalies", "", "None found by the detectors (spike, non-finite, divergence, "
                "plateau, chance, train/held-out gap)."]
    rows = [[a["kind"], a["severity"], a["metric"], a["start"], a["end"], a["explanation"]] for a in j["anomalies"]]
    return ["## Anomalies", "", md_table(["kind", "severity", "metric", "from step", "to step", "what"], rows)]


def report_markdown(a: Analysis, j: dict, images: dict[str, str]) -> str:
    """The report; ``images`` maps a plot name to the URL to show it from."""
    h = a.history
    lines = [f"# Training analysis: {h.meta.run}", "", zh_subtitle(h.meta.run, a.metric, a.x), "",
             f"Source: `{h.meta.path}` ({h.meta.source}); {len(a.series)} points of {a.metric}; "
             f"x axis: {a.x}. zhbert {__version__}.", "",
             "## Metric used", "", f"**{a.metric}**: {j['metric_reason']}."]
    lines += [""] + _summary_md(j) + [""] + _correlation_md(j) + [""] + _fit_md(a, j)
    lines += [""] + _backtest_md(j) + [""] + _anomalies_md(j)
    if images:
        lines += ["", "## Charts", ""]
        lines += [f"![{name}]({url})\n" for name, url in images.items()]
    lines += ["", "## Not computed", ""]
    lines += [f"- {n['what']}: {n['why']}" for n in j["not_computed"]] or ["Everything was computed."]
    if h.notes:
        lines += ["", "## Notes on the input", ""] + [f"- {n}" for n in h.notes]
    return "\n".join(lines) + "\n"


HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}}
table{{border-collapse:collapse;margin:1em 0;font-size:90%}}td,th{{border:1px solid #ccc;padding:3px 8px}}
th{{background:#f3f3f3}}img{{max-width:100%}}code{{background:#f5f5f5}}</style></head>
<body>
{body}
</body></html>
"""


def report_html(a: Analysis, j: dict, out: Path, names: list[str]) -> str:
    """Self-contained HTML: the same report with the PNGs embedded as base64."""
    import html

    import markdown

    images = {n: "data:image/png;base64," + base64.b64encode((out / f"{n}.png").read_bytes()).decode()
              for n in names}
    body = markdown.markdown(report_markdown(a, j, images), extensions=["tables"])
    return HTML_PAGE.format(title=html.escape(f"Training analysis: {a.history.meta.run}"), body=body)


# ----------------------------------------------------------------------------- output

def default_out(path: Path) -> Path:
    return path / "analysis" if path.is_dir() else path.parent / f"{path.stem}_analysis"


def check_out(out: Path, marker: str) -> None:
    """Refuse to replace a directory we did not write (it would be deleted)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / marker).exists())):
        raise UserError(f"--out {out} exists and is not an earlier zhbert output (no {marker}); "
                        "choose a new or empty directory")


def write_analysis(a: Analysis, out: Path) -> dict:
    """Write analysis.json, the plots and the reports into ``out`` (replaced atomically)."""
    check_out(out, "analysis.json")
    try:
        with staged_dir(out, force=True) as tmp:
            j = a.to_json()
            names, skipped = make_plots(a, tmp)
            j["not_computed"] += [{"what": w, "why": y} for w, y in skipped]
            j["plots"] = {n: [f"{n}.png", f"{n}.svg"] for n in names}
            atomic_write_json(tmp / "analysis.json", j)
            atomic_write_text(tmp / "report.md", report_markdown(a, j, {n: f"{n}.png" for n in names}))
            atomic_write_text(tmp / "report.html", report_html(a, j, tmp, names))
    except OSError as exc:
        raise UserError(f"could not write the analysis to {out}: {exc.strerror or exc}; "
                        "pass --out DIR to write it somewhere else") from None
    return j


def summary_text(a: Analysis, j: dict, out: Path) -> str:
    lines = [f"run {a.history.meta.run} ({a.history.meta.source}): {a.metric} vs {a.x}, "
             f"{len(a.series)} points", f"  metric: {j['metric_reason']}"]
    c = j["correlation"]
    if c:
        lines.append(f"  Pearson r = {fmt(c['pearson']['r'])} (R² {fmt(c['pearson']['r2'])}); naive 95% CI "
                     f"{fmt(c['pearson']['ci95'], 3)}, p {fmt_p(c['pearson']['p'])}; corrected for "
                     f"autocorrelation (rho1 {fmt(c['autocorrelation']['rho1'], 2)}, n_eff "
                     f"{fmt(c['autocorrelation']['n_eff'], 1)}): CI {fmt(c['corrected']['ci95'], 3)}, "
                     f"p {fmt_p(c['corrected']['p'])}")
    bf = j["summary"][a.metric]["best_fit"]
    if bf:
        lines.append(f"  best curve: {bf['model']}" + (f", asymptote {fmt(bf['asymptote'])} "
                     f"{fmt(bf['asymptote_ci95'])}" if bf["asymptote"] is not None else ""))
    if j["prediction"]:
        lines.append(f"  target {j['prediction']['target']:g}: {j['prediction']['message']}")
    for an in j["anomalies"]:
        lines.append(f"  anomaly ({an['severity']}): {an['kind']} in {an['metric']}")
    for n in j["not_computed"]:
        lines.append(f"  not computed: {n['what']}: {n['why']}")
    lines.append(f"wrote {out}/ (analysis.json, report.md, report.html, {len(j['plots'])} charts as PNG + SVG)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument("--target", type=float, help=f"target for the prediction (default "
                        f"{DEFAULT_TARGET} for accuracy metrics)")
    parser.add_argument("--out", help="output directory (default RUN_DIR/analysis, or NAME_analysis "
                        "next to a history file)")
    parser.add_argument("--n-boot", type=int, default=200, help="bootstrap refits per curve (default 200)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    if args.n_boot < 0:
        raise UserError("--n-boot must be 0 or more")
    path = Path(args.history)
    history = load_history(path, args.metric)
    out = Path(args.out) if args.out else default_out(path)
    check_out(out, "analysis.json")  # before minutes of fitting, not after
    a = analyze(history, x=args.x, target=args.target, n_boot=args.n_boot, seed=args.seed)
    j = write_analysis(a, out)
    print(json.dumps(j, indent=2, ensure_ascii=False) if args.json else summary_text(a, j, out))
    return 0
