"""The study of one run, rendered: charts, report.md, report.html and the summary lines,
from an ``Analysis`` (zhbert.report_analysis) and its ``to_json()``; and writing them out.

The output directory is staged (fileio.staged_dir): a reader never sees half an analysis.
Nothing here computes a statistic.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any, Callable

from zhbert import __version__
from zhbert.errors import UserError
from zhbert.fileio import atomic_write_json, atomic_write_text, staged_dir
from zhbert.outputs import check_out, json_says, output_kind
from zhbert.metrics import metric_info
from zhbert.report_analysis import SCHEMA, Analysis, _attempt, eval_ci

MARKER = "analysis.json"
# every analysis.json analyze wrote names its schema: another program's file does not
output_kind(MARKER, "zhbert analysis", json_says(MARKER, "schema", SCHEMA))

ZH_X = {"step": "训练步数", "tokens": "训练词元数", "seconds": "训练时间", "characters": "训练字符数"}


def zh_subtitle(run: str, metric: str, x: str) -> str:
    """The Chinese line under each title: run name, metric, axis."""
    return f"运行 {run}：{metric_info(metric).zh}与{ZH_X[x]}的关系"



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
    fit = next((f for f in fits if a.prediction and f.name == a.prediction.model), None)
    if (a.prediction is not None and fit is not None) or a.outlook is not None:
        jobs["prediction"] = lambda: plots.prediction_figure(series, fit, a.prediction, x=x, subtitle=sub,
                                                             outlook=a.outlook)
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


def asymptote_text(bf: dict) -> str:
    """A fit's asymptote and its 95% CI; a floor the fit drove to 0 (its bound) reads as such,
    not as 3.5e-13 (a loss curve's floor that the points do not pin)."""
    a = bf.get("asymptote")
    if a is None:
        return "-"
    shown = "0 (at its bound: not pinned by the points)" if abs(a) < 1e-9 else fmt(a)
    ci = bf.get("asymptote_ci95")  # none without refits (--n-boot 0): no "-" or "[nan, nan]"
    return f"{shown} {fmt(ci)}" if ci else shown


def _summary_md(j: dict) -> list[str]:
    rows = []
    for name, s in j["summary"].items():
        bf = s["best_fit"] or {}
        asym = asymptote_text(bf)
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
    rows = [[r["model"], "ok" if r["ok"] else f"failed: {r['error']}", r["aic"] if r["ok"] else None,
             "-" if r["delta_aic"] is None else f"{r['delta_aic']:.1f}"]
            for r in bf["ranking"]]
    out += [f"Models fitted to {a.metric} with scipy `curve_fit`, ranked by AIC; uncertainty from "
            f"{bf['n_boot']} bootstrap refits ({bf.get('bootstrap') or 'residual bootstrap'}).", "",
            md_table(["model", "status", "AIC", "ΔAIC"], rows), "",
            f"Best: **{bf['model']}** `{bf['formula']}`"
            + (f", asymptote {asymptote_text(bf)} (value [95% CI])"
               if bf["asymptote"] is not None else "") + "."]
    p = j["prediction"]
    if p:
        out += ["", f"**Prediction for target {p['target']:g}:** {p['message']}."]
        out += ["", f"**Warning:** {p['warning']}."] if p.get("warning") else []
        if p["by_model"]:
            out += ["", "Each model's answer: " + ", ".join(f"{k} {fmt(v)}" for k, v in p["by_model"].items())
                    + f" ({j['x_axis']})."]
        out += [f"- note: {n}" for n in p["notes"]]
    return out + _outlook_md(a)


def _outlook_md(a: Analysis) -> list[str]:
    o = a.outlook
    if o is None:
        return []
    f, g = o.final, o.final_longer
    out = ["", "### Schedule-aware forecast", "",
           f"The families above are blind to the learning rate: they learn where *this* schedule "
           f"flattens. {o.method} (`zhbert predict`) knows it:", "",
           md_table(["run", f"{o.acc_metric} at its end", "80% interval", "95% interval"],
                    [[f"this schedule, {o.planned:,} steps", f.mean, fmt([f.lo80, f.hi80]), fmt([f.lo95, f.hi95])],
                     [f"the same stretched to {o.longer:,} steps", g.mean, fmt([g.lo80, g.hi80]),
                      fmt([g.lo95, g.hi95])]])]
    if o.reach is not None:
        out += ["", f"**Target {o.reach.target:g}:** {o.reach.message}."]
    return out + [f"- note: {n}" for n in o.notes]


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
        lines.append(f"  best curve: {bf['model']}" + (f", asymptote {asymptote_text(bf)}"
                                                       if bf["asymptote"] is not None else ""))
    if a.outlook is not None:  # first: the answer that knows where the lr schedule goes
        lines.append(f"  schedule-aware: {a.outlook.summary()}")
    if j["prediction"]:  # beside the planner's answer, say which one ignores the lr schedule
        # also where the law could not run: a run with an lr schedule still has one
        scheduled = a.outlook is not None or "lr" in a.history.series
        blind = (" (the curve fit, blind to the lr schedule" + (
            "; the schedule-aware line above is not)" if a.outlook is not None else ")")
            if scheduled else "")
        lines.append(f"  target {j['prediction']['target']:g}{blind}: {j['prediction']['message']}")
        if j["prediction"].get("warning"):
            lines.append(f"  warning: {j['prediction']['warning']}")
    for an in j["anomalies"]:
        where = (f"step {an['start']:,.0f}" if an["start"] == an["end"]
                 else f"steps {an['start']:,.0f}-{an['end']:,.0f}")
        lines.append(f"  anomaly ({an['severity']}): {an['kind']} in {an['metric']} at {where}")
    for n in j["not_computed"]:
        lines.append(f"  not computed: {n['what']}: {n['why']}")
    lines.append(f"wrote {out}/ (analysis.json, report.md, report.html, {len(j['plots'])} charts as PNG + SVG)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- output

def write_analysis(a: Analysis, out: Path) -> dict:
    """Write analysis.json, the plots and the reports into ``out`` (replaced atomically)."""
    check_out(out, MARKER)
    try:
        with staged_dir(out, force=True) as tmp:
            j = a.to_json()
            names, skipped = make_plots(a, tmp)
            j["not_computed"] += [{"what": w, "why": y} for w, y in skipped]
            j["plots"] = {n: [f"{n}.png", f"{n}.svg"] for n in names}
            atomic_write_json(tmp / MARKER, j)
            atomic_write_text(tmp / "report.md", report_markdown(a, j, {n: f"{n}.png" for n in names}))
            atomic_write_text(tmp / "report.html", report_html(a, j, tmp, names))
    except OSError as exc:
        raise UserError(f"could not write the analysis to {out}: {exc.strerror or exc}; "
                        "pass --out DIR to write it somewhere else") from None
    return j
