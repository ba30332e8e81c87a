"""The dashboard's study of one run: correlation, curve fit, prediction, anomalies and the
schedule-aware law's steps to target (zhbert.analysis), from the records the server keeps
in memory, cached per history change so a 1,000-point run is fitted once per change, not
once per poll. Split from server.py, which serves it (``study``)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from zhbert.errors import UserError
from zhbert.fileio import json_safe
from zhbert.history import read_history
from zhbert.metrics import metric_info

N_BOOT = 200              # bootstrap curves for the fit band and the prediction interval

def _ckpt_stamp(run_dir: Path) -> tuple | None:
    """checkpoint_eval.jsonl's size and mtime (with the history's gen and offset, the study's key)."""
    try:
        st = (run_dir / "checkpoint_eval.jsonl").stat()
        return (st.st_size, st.st_mtime_ns)
    except FileNotFoundError:
        return None


def _guard(fn, about: str = "") -> dict[str, Any]:
    try:
        return fn()
    except UserError as exc:  # "about" once: a message may already say what it is about
        return {"error": str(exc) if str(exc).startswith(about) else about + str(exc)}


_STUDIES: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
STUDY_CACHE = 64
_STUDIES_LOCK = threading.Lock()


def study(ref, metric: str | None, x: str, target: float | None) -> dict[str, Any]:
    """The study of a run's history as it is now, from the records in memory; cached until
    the history or the checkpoint evaluations change."""
    from zhbert.analysis.history import zhbert_history
    hist = ref.history.refresh()
    key = (ref.path, hist.gen, hist.reader.offset, _ckpt_stamp(ref.path), metric, x, target)
    found = _STUDIES.get(key)
    if found is not None:
        return found
    with hist.lock:
        lines = list(hist.records)
        notes = [f"history.jsonl: skipped {len(hist.bad_lines)} corrupt line(s)"] if hist.bad_lines else []
    ckpt = ref.path / "checkpoint_eval.jsonl"
    extra = read_history(ckpt).records if ckpt.exists() else []
    found = _STUDIES[key] = _study(zhbert_history(lines, extra, ref.path, metric, notes), x, target)
    with _STUDIES_LOCK:  # endpoints run in a thread pool
        while len(_STUDIES) > STUDY_CACHE:
            _STUDIES.popitem(last=False)
    return found


def _study(h, x: str, target: float | None) -> dict[str, Any]:
    """Correlation, best curve fit with extrapolation and band, prediction, anomalies."""
    import numpy as np
    from zhbert.analysis import correlate, detect, fit_curve, predict_steps

    s, dropped = h.metric().finite()
    out: dict[str, Any] = {"metric": s.name, "metrics": sorted(h.series), "x": x,
                           "info": {m: metric_info(m).to_json() for m in sorted(h.series)},
                           "notes": list(h.notes), "dropped": dropped,
                           "anomalies": [a.to_json() for a in detect(h)]}
    out["correlation"] = _guard(lambda: correlate(s.step, s.y, n_boot=1000).to_json())

    def fit() -> dict[str, Any]:
        part = h.curve_part(s)  # after the length switch: one smooth curve
        xs = part.x(x)
        fits = fit_curve(xs, part.y, n_boot=N_BOOT, metric=s.name)
        best = fits[0]
        if not best.ok:
            raise UserError("no learning-curve model could be fitted: " + best.error)
        grid = np.linspace(float(xs.min()), 3.0 * float(xs.max()), 150)  # 3x: the extrapolation
        lo, hi = best.band(grid)
        return {"best": best.to_json(), "others": [f.to_json() for f in fits[1:]],
                "grid": grid.tolist(), "y": best.predict(grid).tolist(), "lo": lo.tolist(),
                "hi": hi.tolist(), "last_x": float(xs.max())}
    out["fit"] = _guard(fit)
    if target is not None:
        out["prediction"] = _guard(lambda: predict_steps(h, target, metric=s.name, x=x,
                                                         n_boot=N_BOOT).to_json(),
                                   f"target {target:g}: ")  # what no answer is to
        out["outlook"] = _guard(lambda: _outlook(h.meta.path, s.name, target), f"target {target:g}: ")
    return json_safe(out)  # NaN -> null, inf -> "inf": what the page takes


def _outlook(path, metric: str, target: float) -> dict[str, Any]:
    """Steps to target by the schedule-aware law (analysis.outlook); the families above
    only see where this run's schedule flattens. The law forecasts one accuracy (the
    Outlook's acc_metric, one of metrics.ACC_METRICS): for any other metric a note says
    so, as `zhbert predict --metric` falls back; a target out of that accuracy's range is
    refused by predict.check_target, the families' and the CLI's own check."""
    from zhbert.metrics import ACC_METRICS
    from zhbert.analysis.outlook import outlook
    from zhbert.analysis.predict import check_target
    pick = "pick it for its steps to target"
    if metric not in ACC_METRICS:  # no fit needed to know it cannot answer
        return {"note": f"answers for accuracy only (the first of {', '.join(ACC_METRICS)} "
                        f"the run records), not {metric}: {pick}"}
    check_target(target, metric)
    o = outlook(path, target)
    if o.acc_metric != metric:  # another accuracy than the one this run's law forecasts
        return {"note": f"answers for {o.acc_metric} only on this run, not {metric}: {pick}"}
    return {"summary": o.summary(), "reach": o.reach and o.reach.to_json(),
            "final": o.final.to_json(), "final_longer": o.final_longer.to_json(), "longer_steps": o.longer}
