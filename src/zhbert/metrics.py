"""What each metric is: which way is better, its bounds, its chance level, its name.

One home for the facts the analysis, the report, compare and the dashboard used to
guess from a metric's name in each place::

    from zhbert.metrics import metric_info
    info = metric_info("eval_nsp_acc")
    info.kind              # "accuracy" | "loss" | "perplexity" | "schedule" | "other"
    info.higher_is_better  # True; False for losses; None when unknown
    info.direction         # +1 higher is better, -1 lower is better, 0 unknown / neither
    info.lower, info.upper # 0.0, 1.0 (None: unbounded on that side)
    info.chance            # 0.5 (a coin flip on a binary task); None when not meaningful
    info.label, info.label_zh  # "held-out NSP accuracy", the Chinese name (or the raw name)
    info.known             # True: listed in KNOWN below; False: the rule for unknown names
    info.direction_for(y)  # direction, read from the curve when the name does not say

Rule for unknown metrics (imported TensorBoard tags, Trainer logs, CSV columns). A
name that is not in ``KNOWN`` is looked up again by its last ``/`` part
("train/mlm_acc" is mlm_acc). Failing that, the lower-cased name decides, first
match wins:

* contains "loss": a loss, lower is better, bounded below by 0;
* contains "ppl" or "perplex": a perplexity, lower is better, bounded below by 1;
* contains "acc": an accuracy, higher is better, in [0, 1];
* anything else: kind "other", direction 0 (unknown), no bounds. Code that needs a
  direction for it reads one from the data with ``direction_for(y)``: a curve whose
  last tenth is below its first tenth falls (-1), otherwise it rises (+1).

Chance levels are only declared for known metrics (an unknown accuracy may have any
number of classes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# The series a history's loss and MLM accuracy are read from, the first found first:
# held-out before training-batch, zhbert's names before a Trainer's (eval_loss,
# eval_accuracy). analysis.plan_runs.loss_and_accuracy pairs them; the plots draw them.
LOSS_METRICS = ("eval_mlm_loss", "eval_loss", "loss", "mlm_loss")
ACC_METRICS = ("eval_mlm_acc", "eval_accuracy", "mlm_acc")
HELD_OUT_ACC = ACC_METRICS[:2]


@dataclass(frozen=True)
class MetricInfo:
    name: str
    kind: str                         # accuracy | loss | perplexity | schedule | other
    direction: int                    # +1 higher is better, -1 lower is better, 0 neither/unknown
    label: str                        # English name for charts and tables
    label_zh: str | None = None       # Chinese name for report subtitles (None: use the raw name)
    lower: float | None = None
    upper: float | None = None
    chance: float | None = None       # the value a model that learned nothing gets
    known: bool = True

    @property
    def higher_is_better(self) -> bool | None:
        return None if self.direction == 0 else self.direction > 0

    @property
    def lower_is_better(self) -> bool:
        return self.direction < 0

    def bounds(self, y: Any = None) -> tuple[float, float]:
        """The values the metric can take (an accuracy's [0, 1], a loss's [0, inf)), -inf /
        inf where unbounded; a curve's forecasts and bands stay inside them (a straight line
        read 933% accuracy). A bound the data ``y`` lies past does not apply: an accuracy
        logged in percent (curve_models.accuracy_cap) is no fraction."""
        lo = -math.inf if self.lower is None else self.lower
        hi = math.inf if self.upper is None else self.upper
        v = np.asarray([] if y is None else y, dtype=float)
        v = v[np.isfinite(v)]
        if len(v):
            lo, hi = (lo if v.min() >= lo else -math.inf), (hi if v.max() <= hi else math.inf)
        return lo, hi

    @property
    def is_curve(self) -> bool:
        """A learning curve worth fitting (an accuracy, a loss or a perplexity)."""
        return self.kind in ("accuracy", "loss", "perplexity")

    @property
    def zh(self) -> str:
        return self.label_zh or self.name

    def direction_for(self, y: Any = None) -> int:
        """The declared direction; for a metric that declares none, +1 unless the
        curve ``y`` falls (its last tenth below its first tenth, at least 3 points each)."""
        if self.direction or y is None:
            return self.direction or 1
        v = np.asarray(y, dtype=float)
        v = v[np.isfinite(v)]
        if len(v) < 2:
            return 1
        k = max(3, len(v) // 10)
        return -1 if float(np.mean(v[-k:])) < float(np.mean(v[:k])) else 1

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "direction": self.direction,
                "higher_is_better": self.higher_is_better, "label": self.label,
                "label_zh": self.label_zh, "lower": self.lower, "upper": self.upper,
                "chance": self.chance, "known": self.known}


def _acc(name: str, label: str, zh: str | None = None, chance: float | None = None) -> MetricInfo:
    return MetricInfo(name, "accuracy", +1, label, zh, 0.0, 1.0, chance)


def _loss(name: str, label: str, zh: str | None = None) -> MetricInfo:
    return MetricInfo(name, "loss", -1, label, zh, 0.0, None)


# The metrics zhbert writes (history.py documents the records) and the common
# Trainer names. A binary task's accuracy is 0.5 by chance.
KNOWN: dict[str, MetricInfo] = {m.name: m for m in (
    _loss("loss", "training loss", "训练损失"),
    _loss("mlm_loss", "MLM loss", "掩码语言模型损失"),
    _loss("nsp_loss", "NSP loss"),
    _loss("sop_loss", "SOP loss"),
    _loss("eval_mlm_loss", "held-out MLM loss", "留出集掩码语言模型损失"),
    _loss("eval_loss", "held-out loss"),
    MetricInfo("eval_ppl", "perplexity", -1, "held-out MLM perplexity", None, 1.0, None),
    _acc("mlm_acc", "MLM accuracy (training batches)", "掩码语言模型准确率（训练批次）"),
    _acc("eval_mlm_acc", "held-out MLM accuracy", "掩码语言模型准确率（留出集）"),
    _acc("nsp_acc", "NSP accuracy", "下一句预测准确率", chance=0.5),
    _acc("sop_acc", "SOP accuracy", "句序预测准确率", chance=0.5),
    _acc("eval_nsp_acc", "held-out NSP accuracy", chance=0.5),
    _acc("eval_sop_acc", "held-out SOP accuracy", chance=0.5),
    MetricInfo("lr", "schedule", 0, "learning rate", "学习率", 0.0, None),
    MetricInfo("learning_rate", "schedule", 0, "learning rate", None, 0.0, None),
    MetricInfo("grad_norm", "other", 0, "gradient norm", None, 0.0, None),
)}

# Binary tasks (chance 0.5), in the order charts list them.
BINARY_TASKS: tuple[str, ...] = tuple(n for n, m in KNOWN.items() if m.chance == 0.5)


def metric_info(name: str) -> MetricInfo:
    """What ``name`` is: its KNOWN entry, else the rule for unknown names (module docstring)."""
    if name in KNOWN:
        return KNOWN[name]
    tail = name.rsplit("/", 1)[-1]
    if tail in KNOWN:
        m = KNOWN[tail]
        return MetricInfo(name, m.kind, m.direction, m.label, None, m.lower, m.upper, m.chance, False)
    low = name.lower()
    if "loss" in low:
        return MetricInfo(name, "loss", -1, name, None, 0.0, None, None, False)
    if "ppl" in low or "perplex" in low:
        return MetricInfo(name, "perplexity", -1, name, None, 1.0, None, None, False)
    if "acc" in low:
        return MetricInfo(name, "accuracy", +1, name, None, 0.0, 1.0, None, False)
    return MetricInfo(name, "other", 0, name, None, None, None, None, False)
