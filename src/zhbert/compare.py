"""``zhbert compare``: runs side by side, aligned honestly.

    zhbert compare runs/base runs/large --x tokens --targets 0.3,0.5
    zhbert compare seed_100k.json seed_50k.json          # the seed's 50K vs 100K question

Runs of different lengths are compared twice: over each run's whole history and
over the common range (the x interval every run covers), because a longer run's
mean and max include training the shorter one never did (the seed compared a 50K
run's r = 0.64 with a 100K run's r = 0.79 as if r measured progress). The x axis
is stated everywhere: steps of runs with different batch sizes are not the same
amount of training; tokens are. Steps to reach an accuracy are observed (the
first crossing of the smoothed curve), not predicted: ``zhbert predict`` does that.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from zhbert import argtypes
from zhbert.analysis import History, Series, correlate, load_history, summary
from zhbert.analysis.consistency import masking_warning
from zhbert.analysis.history import run_labels, with_characters
from zhbert.analysis.planning import steps_text
from zhbert.analysis.predict import _already_reached, check_target
from zhbert.errors import UserError
from zhbert.fileio import atomic_write_json, atomic_write_text, staged_dir
from zhbert.outputs import check_out, json_says, output_kind
from zhbert.metrics import metric_info
from zhbert.report_analysis import CORR_BOOT, correlation_json
from zhbert.report_render import ZH_X, fmt, fmt_p, md_table

SCHEMA, VERSION = "zhbert-comparison", 1
MARKER = "comparison.json"
# every comparison.json compare wrote names its schema: another program's file does not
output_kind(MARKER, "zhbert comparison", json_says(MARKER, "schema", SCHEMA))
DEFAULT_TARGETS = (0.3, 0.5)  # for accuracy metrics


@dataclass(frozen=True)
class Run:
    name: str
    history: History
    series: Series     # the compared metric, finite values only


def load_runs(paths: list[str], metric: str | None, x: str) -> list[Run]:
    if len(paths) < 2:
        raise UserError("compare needs at least two runs (run directories or history files)")
    from zhbert.analysis.plan_runs import refuse_copied_histories, refuse_repeats
    why = "a run compared with itself tells nothing"
    refuse_repeats(paths, why)
    histories = [load_history(p, metric) for p in paths]
    refuse_copied_histories(paths, histories, why)
    if x == "characters":  # runs of different languages/tokenizers: aligned by text seen
        histories = [with_characters(h, _characters_per_token(p)) for p, h in zip(paths, histories)]
    name = metric or histories[0].default_metric
    runs = []
    for p, h, label in zip(paths, histories, run_labels([h.meta.run for h in histories])):
        s, _ = h.metric(name).finite()
        if len(s) == 0:
            raise UserError(f"{p}: {name} has no finite values; nothing to compare")
        s.x(x)  # every run must record the axis: raises a message naming the metric and --x
        runs.append(Run(label, h, s))
    return runs


def _characters_per_token(path: str) -> float:
    from zhbert.run import open_run, open_run_data
    if not Path(path).is_dir():
        raise UserError(f"{path}: --x characters needs run directories (their data directory "
                        "gives characters per token); use --x tokens for history files")
    return open_run_data(open_run(path)).characters_per_token()


def clip(series: Series, x: str, lo: float, hi: float) -> Series:
    """The part of ``series`` with lo <= x <= hi."""
    xs = series.x(x)
    return series.select((xs >= lo) & (xs <= hi))


def common_range(runs: list[Run], x: str) -> tuple[float, float] | None:
    lo, hi = _overlap(runs, x)
    return (lo, hi) if hi > lo else None


def _overlap(runs: list[Run], x: str) -> tuple[float, float]:
    return (max(float(r.series.x(x)[0]) for r in runs), min(float(r.series.x(x)[-1]) for r in runs))


def no_common_range(runs: list[Run], x: str) -> str:
    """Why there is no common range: no overlap, or a single shared point (a 50-step run's
    one eval at step 50 beside a longer run's), which is no range to compare over."""
    lo, hi = _overlap(runs, x)
    if hi == lo:
        return f"the runs share only {x} {lo:,.0f}, one point: no range to compare over"
    return f"the runs do not overlap on {x}"


def _corr(s: Series, x: str, skipped: list, what: str) -> dict | None:
    try:
        return correlation_json(correlate(s.x(x), s.y, n_boot=CORR_BOOT), None)
    except UserError as exc:
        skipped.append({"what": what, "why": str(exc)})
        return None


def _reached(s: Series, x: str, targets: tuple[float, ...], d: int) -> dict[str, Any]:
    out = {}
    for t in targets:
        at = _already_reached(s.x(x), s.y, t, d)
        step = _already_reached(s.step, s.y, t, d)
        out[f"{t:g}"] = None if at is None else {"x": at, "step": step}
    return out


def _forecast(r: Run, targets: tuple[float, ...], skipped: list) -> dict | None:
    """The schedule-aware law's answer for the run (analysis.outlook), where its lr is known."""
    from zhbert.analysis.outlook import steps_to_targets
    try:
        return steps_to_targets(r.history.meta.path, targets)
    except UserError as why:
        skipped.append({"what": f"schedule-aware forecast of {r.name}", "why": str(why)})
        return None


def _throughput(h: History) -> dict[str, float | None]:
    m = h.meta
    sps = m.seconds_per_step
    return {"tokens_per_step": m.tokens_per_step, "positions_per_step": m.positions_per_step,
            "average_tokens_per_s": _average_tokens_per_s(h),
            "seconds_per_step": sps, "steps_per_s": 1.0 / sps if sps else None}


def _average_tokens_per_s(h: History) -> float | None:
    """The run's average as `zhbert status` and train's last line give it (runstate's
    average_tokens_per_s of the latest point with tokens and seconds), not Meta's median
    of the log intervals, which left out evals and checkpoints and disagreed with both."""
    from zhbert.runstate import average_tokens_per_s

    last = max((s for s in h.series.values() if s.tokens is not None and s.seconds is not None),
               key=lambda s: s.step[-1], default=None)
    return None if last is None else average_tokens_per_s(float(last.tokens[-1]),
                                                          float(last.seconds[-1]))


def _relative(v: float | None, base: float | None) -> float | None:
    return None if v is None or base is None or base == 0 else (v - base) / abs(base)


def compare(runs: list[Run], *, x: str = "step", targets: tuple[float, ...] | None = None) -> dict:
    """Everything comparison.json holds; see the module docstring for what is compared how."""
    name = runs[0].series.name
    info = metric_info(name)
    direction = info.direction_for(runs[0].series.y)
    if targets is None:
        targets = DEFAULT_TARGETS if info.kind == "accuracy" else ()
    common = common_range(runs, x)
    shared = [m for m in runs[0].history.series if all(m in r.history.series for r in runs[1:])]
    metrics = [name] + [m for m in shared if m != name]
    skipped: list[dict] = []
    if common is None:
        skipped.append({"what": "common-range figures", "why": no_common_range(runs, x)})
    out_runs = []
    for r in runs:
        entry: dict[str, Any] = {
            "name": r.name, "path": r.history.meta.path, "source": r.history.meta.source,
            "n": len(r.series), "x_range": [float(r.series.x(x)[0]), float(r.series.x(x)[-1])],
            "step_range": [float(r.series.step[0]), float(r.series.step[-1])],
            "throughput": _throughput(r.history), "metrics": {},
            "correlation": {"full": _corr(r.series, x, skipped, f"correlation of {r.name}")},
            "reached": _reached(r.series, x, targets, direction),
            "forecast": _forecast(r, targets, skipped) if info.kind == "accuracy" else None}
        for m in metrics:
            s, _ = r.history.series[m].finite()
            entry["metrics"][m] = summary(s)
            if common and m == name:
                entry["metrics"][m]["common"] = summary(clip(s, x, *common))
        if common:
            entry["correlation"]["common"] = _corr(clip(r.series, x, *common), x, skipped,
                                                   f"common-range correlation of {r.name}")
        out_runs.append(entry)
    base = out_runs[0]
    relative = {e["name"]: {m: {k: _relative(e["metrics"][m][k], base["metrics"][m][k])
                                for k in ("last", "mean", "max")} for m in metrics}
                for e in out_runs[1:]}
    for e in out_runs[1:]:
        if "common" in e["metrics"][name]:
            relative[e["name"]][name]["common"] = {
                k: _relative(e["metrics"][name]["common"][k], base["metrics"][name]["common"][k])
                for k in ("last", "mean", "max")}
    masks = masking_warning([(r.name, r.history.meta) for r in runs])
    # the forecast table's plateau warnings, as predict and analyze decide them
    # (planning.plateau_warning): its "steps to 0.3" for a run on a plateau went unflagged
    plateaus = [f"{e['name']}: {e['forecast']['warning']}" for e in out_runs
                if e["forecast"] and e["forecast"].get("warning")]
    return {"schema": SCHEMA, "version": VERSION, "x_axis": x, "metric": name, "baseline": runs[0].name,
            "common_range": list(common) if common else None, "targets": list(targets),
            "metrics": metrics, "runs": out_runs, "relative": relative, "not_computed": skipped,
            "warnings": ([masks] if masks else []) + plateaus}


# ----------------------------------------------------------------------------- text

def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:+.1%}"


def comparison_markdown(j: dict, chart: str | None) -> str:
    x, name, runs, common = j["x_axis"], j["metric"], j["runs"], j["common_range"]
    lines = [f"# Comparison of {len(runs)} runs: {name} by {x}", "",
             f"比较 {len(runs)} 个运行：{metric_info(name).zh}，按{ZH_X[x]}对齐", "",
             f"Aligned by **{x}**. " + ("Common range (every run has data): "
                                        f"{fmt(common[0])} to {fmt(common[1])} {x}." if common else
                                        "No common-range figures: " + next(
                                            (k["why"] for k in j["not_computed"]
                                             if k["what"] == "common-range figures"), "") + ".")
             + f" Relative differences are against the baseline, **{j['baseline']}**.", "",
             *[line for w in j.get("warnings", []) for line in (f"**{w}**", "")],
             "## Runs", "",
             _runs_table(runs, x)]
    lines += ["", f"## {name}: whole run and common range", ""]
    rows = []
    for r in runs:
        s, c = r["metrics"][name], r["metrics"][name].get("common", {})
        rel = j["relative"].get(r["name"], {}).get(name, {})
        rows.append([r["name"], s["last"], s["mean"], s["max"], c.get("last"), c.get("mean"), c.get("max"),
                     _pct(rel.get("last")), _pct(rel.get("common", {}).get("last"))])
    lines.append(md_table(["run", "final", "mean", "max", "final (common)", "mean (common)", "max (common)",
                           "Δ final", "Δ final (common)"], rows))
    lines += ["", "## All shared metrics (whole run)", ""]
    rows = [[m, r["name"], r["metrics"][m]["last"], r["metrics"][m]["mean"], r["metrics"][m]["max"],
             _pct(j["relative"].get(r["name"], {}).get(m, {}).get("last"))]
            for m in j["metrics"] for r in runs]
    lines.append(md_table(["metric", "run", "final", "mean", "max", "Δ final"], rows))
    lines += ["", f"## Correlation of {name} with {x}", "",
              "Naive figures assume independent points; the corrected ones use the effective sample "
              "size n_eff of the autocorrelated residuals (see `zhbert analyze`). r grows with the length "
              "of a saturating run, so compare it over the common range.", ""]
    rows = []
    for r in runs:
        for part, c in r["correlation"].items():
            if c:
                rows.append([r["name"], part, c["n"], c["pearson"]["r"], c["pearson"]["r2"], fmt_p(c["pearson"]["p"]),
                             c["autocorrelation"]["rho1"], fmt(c["autocorrelation"]["n_eff"], 1),
                             fmt(c["corrected"]["ci95"]), fmt_p(c["corrected"]["p"])])
    lines.append(md_table(["run", "range", "n", "r", "R²", "p (naive)", "rho1", "n_eff", "95% CI (corrected)",
                           "p (corrected)"], rows))
    if j["targets"]:
        lines += ["", f"## When the smoothed {name} first reached each target (observed)", "",
                  "Smoothed with a centered moving average over 5% of each run's points, so runs of "
                  "different lengths are smoothed over different spans: differences of a few percent "
                  "here are within that.", ""]
        cols = ["x"] + (["step"] if x != "step" else [])
        rows = [[r["name"], t] + ([v[c] for c in cols] if v else ["not reached"] + ["-"] * (len(cols) - 1))
                for r in runs for t, v in r["reached"].items()]
        lines.append(md_table(["run", "target", x] + cols[1:], rows))
    lines += _forecast_md(j)
    if chart:
        lines += ["", f"![comparison]({chart})"]
    if j["not_computed"]:
        lines += ["", "## Not computed", ""] + [f"- {n['what']}: {n['why']}" for n in j["not_computed"]]
    return "\n".join(lines) + "\n"


def _runs_table(runs: list[dict], x: str) -> str:
    """One row per run; the x range only when x is not the step (it was a second "step
    range" column reading "(same)"). Speeds are whole-run averages, as `zhbert status`'s;
    token counts in whole tokens (fmt wrote 824.8841 below 1,000 and 1,264 above)."""
    xcol = [f"{x} range"] if x != "step" else []
    whole = lambda v: None if v is None else round(v)  # noqa: E731
    return md_table(["run", "source", "points", "step range", *xcol, "tokens/step",
                     "tokens/s (run average)", "steps/s (run average)"],
                    [[r["name"], r["source"], r["n"], fmt(r["step_range"]),
                      *([fmt(r["x_range"])] if xcol else []), whole(r["throughput"]["tokens_per_step"]),
                      whole(r["throughput"].get("average_tokens_per_s")), r["throughput"]["steps_per_s"]]
                     for r in runs])


def _forecast_md(j: dict) -> list[str]:
    rows = []
    for r in j["runs"]:
        f = r.get("forecast")
        if not f:
            continue
        # steps as predict writes them: "<= N" where the shortest run searched already reaches it
        steps = [(t, steps_text(g["steps"], g.get("shortest_searched")) if g["reachable"]
                  else "not reachable") for t, g in f["reach"].items()]
        rows.append([r["name"], f["planned_steps"], f["final"]["mean"], fmt(f["final"]["interval80"])]
                    + [v for _, v in steps])
    if not rows:
        return []
    targets = list(next(r["forecast"] for r in j["runs"] if r.get("forecast"))["reach"])
    return ["", "## Forecast by the schedule-aware law (`zhbert predict`)", "",
            "Each run's own law: the accuracy where its schedule ends, and the steps a run of the "
            "same schedule, stretched, needs for each target (predicted, unlike the table above).", "",
            md_table(["run", "planned steps", "forecast at its end", "80% interval"]
                     + [f"steps to {t}" for t in targets], rows)]


# ----------------------------------------------------------------------------- CLI

def _targets(text: str | None, metric: str) -> tuple[float, ...] | None:
    """--targets, held to the bounds `zhbert predict` holds a target to (check_target: finite;
    an accuracy's in (0, 1)): -1 and nan were taken. Checked here, not by argparse: the
    bounds depend on the compared metric."""
    if text is None:
        return None
    try:
        targets = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise UserError(f"--targets must be comma-separated numbers like 0.3,0.5, got {text!r}") from None
    for t in targets:
        try:
            check_target(t, metric)
        except UserError as why:
            raise UserError(f"--targets: {why}") from None
    return targets


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="two or more run directories or history files "
                        "(anything `zhbert analyze` accepts); the first is the baseline")
    parser.add_argument("--metric", help="metric to compare (default: the first run's default metric)")
    parser.add_argument("--x", choices=("step", "tokens", "seconds", "characters"), default="step",
                        help="align the runs by this axis (default: step); characters = tokens x "
                             "each run's characters per token, for runs of other languages or "
                             "tokenizers")
    parser.add_argument("--targets", help="accuracies to report the first observed crossing of "
                        f"(default {','.join(map(str, DEFAULT_TARGETS))} for accuracy metrics)")
    parser.add_argument("--out", type=argtypes.out_path, default="comparison",
                        help="output directory (default: comparison/ in the current directory); "
                             "an earlier comparison there is replaced, any other folder refused")
    parser.add_argument("--json", action="store_true", help="print comparison.json")


def run(args: argparse.Namespace) -> int:
    from zhbert import plots

    runs = load_runs(args.runs, args.metric, args.x)
    j = compare(runs, x=args.x, targets=_targets(args.targets, runs[0].series.name))
    out = Path(args.out)
    check_out(out, MARKER)
    replaced = out.exists() and any(out.iterdir())  # past check_out: an earlier comparison
    common = tuple(j["common_range"]) if j["common_range"] else None
    sub = f"比较：{metric_info(j['metric']).zh}（按{ZH_X[args.x]}对齐）"
    try:
        with staged_dir(out, force=True) as tmp:
            fig = plots.comparison_figure([(r.name, r.series) for r in runs], x=args.x, common=common,
                                          subtitle=sub)
            plots.save_figure(fig, tmp, "comparison")
            atomic_write_json(tmp / MARKER, j)
            atomic_write_text(tmp / "comparison.md", comparison_markdown(j, "comparison.png"))
    except OSError as exc:
        raise UserError(f"could not write the comparison to {out}: {exc.strerror or exc}; "
                        "pass --out DIR to write it somewhere else") from None
    # where it went, also under --json (on stderr there, so stdout stays JSON): the default
    # folder is in the current directory and an earlier comparison there is replaced
    wrote = (f"wrote {out / 'comparison.md'} (and comparison.json, .png, .svg in {out}/"
             + (", replacing the earlier comparison there)" if replaced else ")"))
    if args.json:
        print(json.dumps(j, indent=2, ensure_ascii=False))
        print(wrote, file=sys.stderr)
    else:
        print(comparison_markdown(j, None).split("\n## All shared metrics")[0].rstrip())
        print("\n" + wrote)
    return 0
