"""`zhbert sweep report SWEEP_DIR`: what the sweep found.

Writes SWEEP_DIR/report/: sweep_report.json, report.md, report.html (charts embedded),
best_config.toml (a file `zhbert train --config` takes: checked by loading it), and the
charts as PNG + SVG: every trial's held-out curve (pruned ones marked), the optimisation
history and Optuna's parameter importances.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zhbert import argtypes
from zhbert.errors import UserError
from zhbert.fileio import atomic_write_text, staged_dir
from zhbert.report_render import fmt
from zhbert.outputs import check_out, json_object, output_kind
from zhbert.sweep.study import (DEFAULT_STUDY, SweepSpec, is_spec_json, load_study, no_sweep,
                                open_storage, read_spec, require_database, require_study,
                                spec_from_storage, spec_warmup_warning, storage_url, trial_label)

MARKER = "sweep_report.json"
# every report written names the sweep's spec: another program's sweep_report.json does not
output_kind(MARKER, "zhbert sweep report",
            lambda folder: is_spec_json(json_object(folder / MARKER).get("spec")))


@dataclass(frozen=True)
class TrialRow:
    number: int                 # Optuna's trial number
    trial_dir: str
    state: str                  # COMPLETE | PRUNED | FAIL | RUNNING | WAITING
    params: dict[str, Any]
    value: float | None         # the objective's final value: a complete trial's only
    steps_run: int
    train_minutes: float | None
    note: str                   # why pruned / failed, retries
    # a trial that did not complete: its last intermediate eval, and at which step (a failed
    # one's was shown as its value: a diverged loss of 982599.8 read like a result)
    last_value: float | None = None
    last_value_step: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SweepReport:
    spec: SweepSpec
    rows: list[TrialRow]
    best: TrialRow | None
    importances: dict[str, float]
    importance_note: str
    curves: list[tuple[str, str, np.ndarray, np.ndarray]] = field(repr=False)
    best_toml: str = ""
    tie_note: str = ""          # where the best value is shared: the space did not tell them apart

    def to_json(self) -> dict[str, Any]:
        return {"spec": self.spec.to_json(), "trials": [r.to_json() for r in self.rows],
                "best": self.best.to_json() if self.best else None,
                "importances": self.importances, "importance_note": self.importance_note,
                "tie_note": self.tie_note,
                "total_steps_run": sum(r.steps_run for r in self.rows)}


def _run_progress(run_dir: Path) -> tuple[int, float | None]:
    """Steps trained and training minutes, as `zhbert status` reads them."""
    from zhbert.runstate import collect
    try:
        s = collect(run_dir)
    except UserError:
        return 0, None
    elapsed = s["train"].get("elapsed")
    return int(s["step"]), None if elapsed is None else elapsed / 60


def _note(t) -> str:
    a = t.user_attrs
    parts = []
    if a.get("pruned_by"):
        p = a["pruned_by"]
        parts.append(p.get("reason") or f"{p.get('pruner')} at step {p.get('step')}")
    if a.get("message"):
        parts.append(str(a["message"]))
    retried = t.system_attrs.get("failed_trial")
    if retried is not None:
        parts.append(f"retry of Optuna trial {retried}")
    return "; ".join(parts)


def _row(t, sweep_dir: Path, space: Any) -> TrialRow:
    rel = t.user_attrs.get("trial_dir", "")
    steps, minutes = _run_progress(sweep_dir / rel) if rel else (0, None)
    complete = t.state.name == "COMPLETE"
    last = None if complete or t.last_step is None else t.last_step
    # the values as the trial got them (space.Param.tidy): 0.3, not 0.30000000000000004
    return TrialRow(t.number, rel, t.state.name, space.tidy(dict(t.params)), t.value if complete else None,
                    steps, minutes, _note(t), None if last is None else t.intermediate_values[last], last)


def _minutes(m: float | None) -> str:
    """Training minutes as a person reads them (0.2, 12.5, 130), not to 4 decimals."""
    return "-" if m is None else f"{m:.2f}" if m < 0.1 else f"{m:.1f}" if m < 100 else f"{m:.0f}"


def _last_eval(r: TrialRow) -> str:
    return "-" if r.last_value is None else f"{fmt(r.last_value)} at step {r.last_value_step:,}"


def _importances(study) -> tuple[dict[str, float], str]:
    import optuna
    from optuna.trial import TrialState
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 2:
        return {}, f"needs at least 2 complete trials (have {len(done)})"
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()  # Optuna's default
    try:
        with warnings.catch_warnings():  # "quantiles select the same trials": few trials
            warnings.simplefilter("ignore", UserWarning)
            imp = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as exc:
        return {}, f"Optuna could not compute them: {exc}"
    return ({k: float(v) for k, v in imp.items()},
            f"Optuna's PED-ANOVA over {len(done)} complete trials; few trials make it coarse")


def _ties(spec: SweepSpec, sweep_dir: Path, complete: list[TrialRow], best: TrialRow) -> str:
    """What to say where the best value is shared ("" where it is not): a sweep whose three
    trials never left their lr warm-up ended all at one value and its report still named
    a "Best" and printed importances of 0.1667 each, as if the space had told them apart."""
    tied = [r for r in complete if math.isclose(r.value, best.value, rel_tol=1e-9, abs_tol=1e-12)]
    if len(tied) < 2:
        return ""
    if len(tied) < len(complete):
        others = ", ".join(trial_label(r.number, r.trial_dir) for r in tied if r is not best)
        return (f"{trial_label(best.number, best.trial_dir)} tied with {others} at {best.value:.4f}: "
                "the first is named best; the space did not tell them apart")
    why = spec_warmup_warning(spec, sweep_dir)
    return (f"all {len(complete)} complete trials ended at {best.value:.4f}: the space made no "
            f"difference at these steps" + (f" (the likely cause: {why})" if why else ""))


def _curves(rows: list[TrialRow], sweep_dir: Path, metric: str):
    from zhbert.history import eval_points, iter_records
    out = []
    for r in rows:
        path = sweep_dir / r.trial_dir / "history.jsonl"
        if not r.trial_dir or not path.exists():
            continue
        pts = eval_points(iter_records(path), metric)
        out.append((r.trial_dir.split("/")[-1], r.state, np.array([s for s, _ in pts], dtype=float),
                    np.array([v for _, v in pts])))
    return out


def collect(sweep_dir: Path, storage_url: str | None = None, study_name: str | None = None) -> SweepReport:
    from zhbert.sweep.liveness import NOT_COUNTED
    spec = read_spec(sweep_dir)
    if storage_url:
        require_database(storage_url)
    if spec is None and storage_url:
        spec = spec_from_storage(open_storage(sweep_dir, storage_url), study_name or DEFAULT_STUDY)
    if spec is None:
        raise no_sweep(sweep_dir)
    if study_name is not None and study_name != spec.study_name:  # it was ignored
        raise UserError(f"--study {study_name!r}: the sweep in {sweep_dir} is the study "
                        f"{spec.study_name!r} (sweep.json); leave --study out, it names the "
                        "study only for a SWEEP_DIR without sweep.json")
    url = storage_url or spec.storage
    storage = open_storage(sweep_dir, url)
    require_study(storage, spec, sweep_dir, url)
    study = load_study(storage, spec)
    trials = study.get_trials(deepcopy=False)
    # one row per trial; an attempt whose worker died is shown through its retry's note
    rows = [_row(t, sweep_dir, spec.space) for t in trials
            if not (t.state.name == "FAIL" and t.user_attrs.get("failure") in NOT_COUNTED)]
    complete = [r for r in rows if r.state == "COMPLETE" and r.value is not None]
    maximize = spec.direction == "maximize"
    best = (max if maximize else min)(complete, key=lambda r: r.value) if complete else None
    tie = _ties(spec, sweep_dir, complete, best) if best is not None else ""
    if tie.startswith("all "):  # Optuna's importances of equal values are noise (0.1667 each)
        imp, note = {}, (f"uninformative: all {len(complete)} complete trials ended at the same "
                         "value, so no parameter made a difference")
    else:
        imp, note = _importances(study)
    rep = SweepReport(spec, rows, best, imp, note,
                      _curves(rows, sweep_dir, spec.metric), tie_note=tie)
    if best is not None:
        rep.best_toml = best_config_toml(spec, sweep_dir, best)
    return rep


# ----------------------------------------------------------------------------- best config

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if v != v else ("inf" if v > 0 else "-inf"))
    return str(v)


def best_config_toml(spec: SweepSpec, sweep_dir: Path, best: TrialRow) -> str:
    """The best trial's full resolved config as TOML for `zhbert train --config`."""
    from zhbert.config import load_config
    cfg = load_config(spec.config_spec(sweep_dir), spec.trial_overrides(best.params))
    lines = [f"# best trial of the sweep {sweep_dir} ({best.trial_dir}): {spec.metric} "
             f"{best.value:.4f} at step {spec.steps:,}", "# zhbert train --config THIS_FILE --data DATA --out RUN"]
    for section, values in cfg.to_dict().items():
        if isinstance(values, dict):
            lines += ["", f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- output

def _fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                     for k, v in params.items())


def report_markdown(rep: SweepReport, images: dict[str, str]) -> str:
    from zhbert.report_render import md_table
    s = rep.spec
    lines = ["# Sweep report", "",
             f"{len(rep.rows)} trials of {s.steps:,} steps over {', '.join(s.space.params)}; "
             f"objective: final held-out {s.metric} ({s.direction}); pruner: {s.pruner}; "
             f"steps trained in all: {sum(r.steps_run for r in rep.rows):,}.", ""]
    if rep.best:
        lines += [f"**Best: {trial_label(rep.best.number, rep.best.trial_dir)}**, {s.metric} "
                  f"{rep.best.value:.4f}: {_fmt_params(rep.best.params)}. Its full config is "
                  "`best_config.toml` (`zhbert train --config best_config.toml ...`).", ""]
        lines += [f"**Tie:** {rep.tie_note}.", ""] if rep.tie_note else []
    else:
        lines += ["No complete trial, so no best config (no `best_config.toml`).", ""]
    header = (["Optuna trial", "dir", "state"] + list(s.space.params)
              + [f"final {s.metric}", "last eval (not complete)", "steps run", "train min", "note"])
    body = [[r.number, r.trial_dir, r.state.lower()] + [r.params.get(k) for k in s.space.params]
            + [r.value, _last_eval(r), r.steps_run, _minutes(r.train_minutes), r.note or "-"]
            for r in rep.rows]
    lines += ["## Trials", "", md_table(header, body), "",
              f"A final {s.metric} is a complete trial's objective; a pruned, failed or running "
              "trial has none, and its last eval (an intermediate value) is shown apart.", ""]
    lines += ["## Parameter importances", ""]
    lines += ([md_table(["parameter", "importance"], [[k, v] for k, v in rep.importances.items()]),
               "", f"({rep.importance_note})"] if rep.importances else
              [f"{'Not shown' if rep.tie_note.startswith('all ') else 'Not computed'}: {rep.importance_note}."])
    for name, title in (("importances", None), ("history", "## Optimisation history"),
                        ("curves", "## All trials' curves")):
        if name in images:
            lines += (["", title] if title else []) + ["", f"![{name}]({images[name]})"]
    return "\n".join(lines) + "\n"


def _charts(rep: SweepReport, out: Path) -> list[str]:
    from zhbert.plots import save_figure
    from zhbert.sweep.charts import plot_history, plot_importances, plot_trial_curves
    axes = {"curves": plot_trial_curves(rep.curves, rep.spec.metric,
                                        rep.best.trial_dir.split("/")[-1] if rep.best else None),
            "history": plot_history([(r.number, r.state, r.value if r.value is not None else r.last_value)
                                     for r in rep.rows if r.state in ("COMPLETE", "PRUNED")
                                     and (r.value is not None or r.last_value is not None)],
                                    rep.spec.direction == "maximize", rep.spec.metric)}
    if rep.importances:
        axes["importances"] = plot_importances(rep.importances)
    for name, ax in axes.items():
        save_figure(ax.figure, out, name)
    return list(axes)


def write_report(rep: SweepReport, out: Path) -> None:
    import html

    import markdown

    from zhbert.config import load_config
    from zhbert.report_render import HTML_PAGE
    if out.exists() and not out.is_dir():  # check_out's "it would be deleted" is for a folder
        raise UserError(f"--out {out} is a file, and the report is a folder of files: choose a new "
                        "or empty directory (the file is left as it is)")
    check_out(out, MARKER)
    with staged_dir(out, force=True) as tmp:
        atomic_write_text(tmp / MARKER, json.dumps(rep.to_json(), indent=2, ensure_ascii=False) + "\n")
        if rep.best_toml:
            atomic_write_text(tmp / "best_config.toml", rep.best_toml)
            load_config(str(tmp / "best_config.toml"))  # it must be a config train takes
        names = _charts(rep, tmp)
        atomic_write_text(tmp / "report.md", report_markdown(rep, {n: f"{n}.png" for n in names}))
        images = {n: "data:image/png;base64," + base64.b64encode((tmp / f"{n}.png").read_bytes()).decode()
                  for n in names}
        body = markdown.markdown(report_markdown(rep, images), extensions=["tables"])
        atomic_write_text(tmp / "report.html", HTML_PAGE.format(title=html.escape("Sweep report"), body=body))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep_dir", help="SWEEP_DIR made by `zhbert sweep`")
    p.add_argument("--out", type=argtypes.out_path, help="report directory (default SWEEP_DIR/report)")
    p.add_argument("--storage", type=storage_url, help="RDB URL when SWEEP_DIR's sweep.json is absent")
    p.add_argument("--study", help="study name in the storage, for a SWEEP_DIR without sweep.json "
                                   "(default zhbert-sweep)")


def run(args) -> int:
    sweep_dir = Path(args.sweep_dir)
    rep = collect(sweep_dir, args.storage, args.study)
    out = Path(args.out) if args.out else sweep_dir / "report"
    write_report(rep, out)
    states = {}
    for r in rep.rows:
        states[r.state.lower()] = states.get(r.state.lower(), 0) + 1
    line = f"sweep report: {len(rep.rows)} trials (" + ", ".join(f"{n} {s}" for s, n in states.items()) + ")"
    files = "report.md, report.html"
    if rep.best:
        line += (f"; best: {trial_label(rep.best.number, rep.best.trial_dir)}: {rep.spec.metric} "
                 f"{rep.best.value:.4f} ({_fmt_params(rep.best.params)})")
        files += ", best_config.toml"
        line += f"; but {rep.tie_note}" if rep.tie_note else ""
    else:
        line += "; no complete trial, so no best config"
    print(line)
    print(f"wrote {out}/ ({files}, charts as PNG + SVG)")
    return 0
