"""Things that went wrong in a run, found in its history.

Which metrics are losses and which have a chance level is zhbert.metrics' to say.

Each detector returns ``Anomaly`` records (kind, metric, step range, severity and
one sentence). ``detect(history)`` runs them all. Thresholds are module constants
so a report can quote them.

  nonfinite  NaN/inf values in any metric (and the trainer's nonfinite_loss events)
  spike      loss far above its rolling median: robust z = 0.6745 (r - med r) / MAD(r)
             of the residual r from a centered rolling median, above SPIKE_Z, the MAD
             taken around the point (NOISE_WINDOWS windows), at least the stretch's, and
             a rise of SPIKE_MIN_RISE at least; both restart at the sequence-length switch
             (``Meta.regimes``), whose first half window is not judged
  plateau    no progress over a window (smoothed metric moved < PLATEAU_MIN_GAIN, less the
             noise of the two means, between the window's first and last quarter) while the
             learning rate is above PLATEAU_MIN_LR of its peak; no window across a switch
  divergence loss rising over a window: linear trend up, significant with the
             autocorrelation-corrected n_eff, and by more than DIVERGE_MIN_RISE relative
  chance     an accuracy with a declared chance level (NSP/SOP: 0.5, see zhbert.metrics)
             within CHANCE_BAND of it over the whole run and its last fifth: the task
             never learned (the seed's NSP)
  gap        train mlm_acc - eval_mlm_acc growing and above GAP_MIN at the end
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
from scipy import ndimage, stats

from zhbert.analysis.history import History, Series
from zhbert.analysis.stats import effective_n, lag1_autocorrelation, smooth, smooth_window
from zhbert.metrics import metric_info

SPIKE_Z = 6.0
# a spike also rises this share above its rolling median: on a smooth falling loss (the
# demo's short phase, 256 rows a batch) rises of 0.02 in 5.4 had robust z over 6 and read
# as "error" spikes
SPIKE_MIN_RISE = 0.03
NOISE_WINDOWS = 3  # a spike's noise scale: the MAD over this many rolling-median windows around it
PLATEAU_MIN_GAIN = {"acc": 0.005, "loss": 0.01}  # absolute for accuracies, relative for losses
# a flat stretch counts as a plateau only while the lr is above this share of its peak: the
# tail of a decay (the demo's cosine, steps 1,550-2,000 of 2,024, lr 14% -> 0% of its peak)
# flattens by design, and analyze called it an anomaly
PLATEAU_MIN_LR = 0.1
DIVERGE_MIN_RISE = 0.05
CHANCE_BAND = 0.03
GAP_MIN = 0.05


@dataclass(frozen=True)
class Anomaly:
    kind: str
    metric: str
    start: float          # first step affected
    end: float            # last step affected
    severity: str         # "info" | "warning" | "error"
    explanation: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "metric": self.metric, "start": self.start, "end": self.end,
                "severity": self.severity, "explanation": self.explanation}


def _runs(mask: np.ndarray) -> Iterator[tuple[int, int]]:
    """(first, last) index of each run of True values."""
    labels, count = ndimage.label(mask)
    for k in range(1, count + 1):
        idx = np.nonzero(labels == k)[0]
        yield int(idx[0]), int(idx[-1])


def nonfinite(history: History) -> list[Anomaly]:
    out = []
    for name, s in history.series.items():
        for a, b in _runs(~np.isfinite(s.y)):
            out.append(Anomaly("nonfinite", name, float(s.step[a]), float(s.step[b]), "error",
                               f"{name} is NaN/inf at {b - a + 1} logged point(s) from step "
                               f"{s.step[a]:.0f}: training produced non-finite values"))
    for ev in history.meta.events:
        if ev.get("kind") == "nonfinite_loss":
            step = float(ev.get("step", np.nan))
            out.append(Anomaly("nonfinite", "loss", step, step, "warning",
                               f"the trainer saw a non-finite loss at step {step:.0f}: "
                               f"{ev.get('message', '')}".rstrip(": ")))
    return out


def spikes(s: Series, window: int = 21, breaks: tuple[int, ...] = ()) -> list[Anomaly]:
    """``breaks``: steps after which the training batches changed shape (zhbert's
    sequence-length switch, ``Meta.regimes``). Each stretch between them gets its own
    rolling median and its own noise scale: the step up in loss from short to
    full-length sequences is not a spike, and neither is the larger batch-to-batch noise
    of the full-length phase measured against the smooth short one."""
    s, _ = s.finite()
    edges = [0, *np.searchsorted(s.step, sorted(breaks), side="right"), len(s.y)]
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        if b - a >= window:
            # after a switch the first half window is not judged: the loss steps up there and
            # falls back over a few logs (a train record can also mix both lengths), which a
            # centred median with no past reads as spikes (the demo: "error" at 850-890)
            out += _spikes_in(s, a, b, window, skip=window // 2 if a else 0)
    return out


def _spikes_in(s: Series, lo: int, hi: int, window: int, skip: int = 0) -> list[Anomaly]:
    y = s.y[lo:hi]
    r = y - ndimage.median_filter(y, size=window, mode="nearest")
    mad = stats.median_abs_deviation(r)
    if mad == 0:
        return []
    # the noise scale around each point (a rolling MAD over NOISE_WINDOWS windows), not the
    # stretch's: a loss is quiet on its plateau and noisier once it falls, and measured
    # against the quiet part the normal bumps of the rest read as spikes (the 2-layer demo:
    # eleven, two of them "error", for rises of 0.05-0.1 in a loss of 4.5)
    dev = np.abs(r - np.median(r))
    local = ndimage.median_filter(dev, size=min(len(r), NOISE_WINDOWS * window), mode="reflect")
    z = 0.6745 * (r - np.median(r)) / np.maximum(local, mad)
    material = r > SPIKE_MIN_RISE * np.abs(y - r)  # y - r: the rolling median
    material[:skip] = False
    out = []
    for a, b in _runs((z > SPIKE_Z) & material):
        peak = float(z[a:b + 1].max())
        out.append(Anomaly("spike", s.name, float(s.step[lo + a]), float(s.step[lo + b]),
                           "warning" if peak < 2 * SPIKE_Z else "error",
                           f"{s.name} jumps {r[a:b + 1].max():.3g} above its rolling median "
                           f"(robust z {peak:.1f} > {SPIKE_Z:g})"))
    return out


def _windows(n: int, w: int) -> Iterator[slice]:
    for start in range(0, n - w + 1, max(1, w // 4)):
        yield slice(start, start + w)


def _straddles(steps: np.ndarray, breaks: tuple[int, ...]) -> bool:
    """Whether a window of steps spans a sequence-length switch (``spikes``' breaks): the
    loss steps up there by the change of task, which is no plateau."""
    return any(steps[0] <= b < steps[-1] for b in breaks)


def plateaus(s: Series, lr: Series | None = None, frac: float = 0.2,
             breaks: tuple[int, ...] = ()) -> list[Anomaly]:
    """Windows of ``frac`` of the run where the smoothed metric did not improve while the
    lr stayed above PLATEAU_MIN_LR of its peak (none across a ``breaks`` step)."""
    s, _ = s.finite()
    w = max(10, int(len(s) * frac))
    if len(s) < 2 * w:
        return []
    loss = metric_info(s.name).direction_for(s.y) < 0
    sign = -1.0 if loss else 1.0
    sm = smooth(s.y)
    finite_lr = lr.y[np.isfinite(lr.y)] if lr is not None else np.array([])
    peak = float(finite_lr.max()) if len(finite_lr) else 0.0
    # one point's noise (robust, from successive differences): a gain is read from two means
    # of q points, and on a held-out accuracy of ~4,000 masked slots (sd ~0.8 points) a
    # window of the demo that rose 0.4 points read as a plateau of a run still learning
    d = np.diff(s.y)
    noise = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / np.sqrt(2)
    k = smooth_window(len(s))  # a mean of q smoothed points spans q + k - 1 points
    flat = np.zeros(len(s), bool)
    for sl in _windows(len(s), w):
        q = max(1, w // 4)
        first, last = sm[sl][:q].mean(), sm[sl][-q:].mean()
        gain = sign * (last - first)
        need = PLATEAU_MIN_GAIN["loss"] * abs(first) if loss else PLATEAU_MIN_GAIN["acc"]
        # less the sd of the difference of the two means, never below no gain at all
        need = max(0.0, need - noise * np.sqrt(2 / (q + k - 1)))
        lr_on = lr is None or np.interp(s.step[sl], lr.step, lr.y).min() > PLATEAU_MIN_LR * peak
        if gain < need and lr_on and not _straddles(s.step[sl], breaks):
            flat[sl] = True
    return [Anomaly("plateau", s.name, float(s.step[a]), float(s.step[b]), "info",
                    f"{s.name} made no progress from step {s.step[a]:.0f} to {s.step[b]:.0f} "
                    f"(smoothed change below {_need_text(loss)}, less its measurement noise, "
                    f"per {w}-point window)"
                    + (f" while the learning rate was above {PLATEAU_MIN_LR:.0%} of its peak"
                       if lr is not None else ""))
            for a, b in _runs(flat)]


def _need_text(loss: bool) -> str:
    return f"{PLATEAU_MIN_GAIN['loss']:.0%} relative" if loss else f"{PLATEAU_MIN_GAIN['acc']:g}"


def divergence(s: Series, frac: float = 0.1) -> list[Anomaly]:
    """Windows where a loss rises significantly (autocorrelation-aware) and materially."""
    s, _ = s.finite()
    w = max(10, int(len(s) * frac))
    if len(s) < w:
        return []
    rising = np.zeros(len(s), bool)
    for sl in _windows(len(s), w):
        x, y = s.step[sl], s.y[sl]
        if np.ptp(y) == 0:
            continue
        fit = stats.linregress(x, y)
        resid = y - fit.intercept - fit.slope * x
        n_eff = effective_n(len(y), lag1_autocorrelation(resid))
        t = fit.slope / fit.stderr * np.sqrt(max(n_eff - 2, 1) / (len(y) - 2)) if fit.stderr > 0 else np.inf
        rise = fit.slope * np.ptp(x) / max(abs(np.median(y)), 1e-12)
        if fit.slope > 0 and stats.t.sf(t, max(n_eff - 2, 1)) < 0.01 and rise > DIVERGE_MIN_RISE:
            rising[sl] = True
    return [Anomaly("divergence", s.name, float(s.step[a]), float(s.step[b]), "error",
                    f"{s.name} rises from step {s.step[a]:.0f} to {s.step[b]:.0f}: training is "
                    "diverging (lower the learning rate or check the data)")
            for a, b in _runs(rising)]


def at_chance(s: Series, chance: float = 0.5) -> list[Anomaly]:
    s, _ = s.finite()
    if len(s) < 5:
        return []
    tail = s.y[-max(1, len(s) // 5):]
    if abs(s.y.mean() - chance) <= CHANCE_BAND and abs(tail.mean() - chance) <= CHANCE_BAND:
        return [Anomaly("chance", s.name, float(s.step[0]), float(s.step[-1]), "error",
                        f"{s.name} stayed at chance over the whole run (mean {s.y.mean():.3f}, "
                        f"last fifth {tail.mean():.3f}, chance {chance:g}): the task never "
                        "learned and its numbers are not a result")]
    return []


def train_eval_gap(train: Series, held_out: Series) -> list[Anomaly]:
    """Train minus held-out accuracy at the eval steps; flag a growing, large gap."""
    train, _ = train.finite()
    held_out, _ = held_out.finite()
    if len(held_out) < 3 or len(train) < 3:
        return []
    gap = np.interp(held_out.step, train.step, smooth(train.y)) - held_out.y
    fit = stats.linregress(held_out.step, gap)
    if gap[-1] > GAP_MIN and fit.slope > 0 and fit.pvalue < 0.05:
        return [Anomaly("gap", f"{train.name}-{held_out.name}", float(held_out.step[0]),
                        float(held_out.step[-1]), "warning",
                        f"training accuracy exceeds held-out accuracy by {gap[-1]:.3f} at the end "
                        f"and the gap is growing: overfitting, or the training measure is optimistic")]
    return []


def detect(history: History) -> list[Anomaly]:
    """All detectors over the metrics this history has."""
    ser, out = history.series, nonfinite(history)
    lr = ser.get("lr")
    for name, s in ser.items():
        info = metric_info(name)
        if info.lower_is_better:
            breaks = history.meta.regimes
            out += spikes(s, breaks=breaks) + divergence(s) + plateaus(s, lr, breaks=breaks)
        elif info.chance is not None:
            out += at_chance(s, info.chance)
    main = ser.get(history.default_metric)
    info = metric_info(main.name) if main is not None else None
    if info is not None and not info.lower_is_better and info.chance is None:
        out += plateaus(main, lr, breaks=history.meta.regimes)  # accuracy dips at the switch
    if "mlm_acc" in ser and "eval_mlm_acc" in ser:
        out += train_eval_gap(ser["mlm_acc"], ser["eval_mlm_acc"])
    return sorted(out, key=lambda a: (a.start, a.kind))
