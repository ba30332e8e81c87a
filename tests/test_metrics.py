"""zhbert.metrics: one registry says what a metric is; the rule for unknown names."""

import numpy as np
import pytest

from zhbert.analysis.curves import ACCURACY_MODELS, LOSS_MODELS, default_models
from zhbert.metrics import BINARY_TASKS, KNOWN, metric_info


def test_known_metrics():
    acc = metric_info("eval_mlm_acc")
    assert acc.known and acc.kind == "accuracy" and acc.higher_is_better is True
    assert (acc.lower, acc.upper, acc.chance) == (0.0, 1.0, None) and acc.label == "held-out MLM accuracy"
    loss = metric_info("mlm_loss")
    assert loss.higher_is_better is False and loss.lower_is_better and loss.lower == 0.0 and loss.upper is None
    assert metric_info("eval_ppl").lower == 1.0 and metric_info("eval_ppl").direction == -1
    assert metric_info("nsp_acc").chance == 0.5 and metric_info("mlm_acc").chance is None
    assert metric_info("lr").direction == 0 and not metric_info("lr").is_curve
    assert metric_info("loss").zh == "训练损失" and metric_info("eval_nsp_acc").zh == "eval_nsp_acc"
    assert BINARY_TASKS == ("nsp_acc", "sop_acc", "eval_nsp_acc", "eval_sop_acc")
    assert all(m.name == n and m.direction in (-1, 0, 1) for n, m in KNOWN.items())


@pytest.mark.parametrize("name, kind, direction, bounds", [
    ("train/mlm_acc", "accuracy", 1, (0.0, 1.0)),      # a TensorBoard tag: its last part is known
    ("eval/loss", "loss", -1, (0.0, None)),
    ("val_Loss", "loss", -1, (0.0, None)),              # case does not matter
    ("dev_perplexity", "perplexity", -1, (1.0, None)),
    ("Accuracy", "accuracy", 1, (0.0, 1.0)),
    ("bleu", "other", 0, (None, None)),
])
def test_rule_for_unknown_names(name, kind, direction, bounds):
    m = metric_info(name)
    assert (m.kind, m.direction, (m.lower, m.upper), m.known) == (kind, direction, bounds, False)
    assert m.name == name and m.chance is None


def test_direction_for_reads_the_curve_only_when_the_name_says_nothing():
    falling, rising = np.linspace(5, 1, 30), np.linspace(0.1, 0.5, 30)
    assert metric_info("bleu").direction_for(falling) == -1
    assert metric_info("bleu").direction_for(rising) == 1
    assert metric_info("bleu").direction_for(None) == 1
    assert metric_info("mlm_acc").direction_for(falling) == 1      # declared wins over the data
    assert metric_info("loss").direction_for(rising) == -1
    assert default_models(falling, "bleu") == LOSS_MODELS
    assert default_models(falling, "mlm_acc") == ACCURACY_MODELS
    assert default_models(rising, "eval_loss") == LOSS_MODELS
    assert metric_info("x").to_json()["higher_is_better"] is None


def test_detectors_and_compare_ask_the_registry(tmp_path):
    """An imported tag of a binary task is checked against its chance level, and an unknown
    falling metric is compared as one where lower is better (both were guessed from the name)."""
    from zhbert.analysis import detect, load_history, smooth
    from zhbert.compare import compare, load_runs

    rows = "".join(f"{s},{0.5 + 0.001 * (s % 3)},{10 / s}\n" for s in range(1, 61))
    for name in ("a", "b"):
        (tmp_path / f"{name}.csv").write_text("step,train/nsp_acc,wer\n" + rows)
    h = load_history(tmp_path / "a.csv", "train/nsp_acc")
    assert ("chance", "train/nsp_acc") in {(a.kind, a.metric) for a in detect(h)}
    runs = load_runs([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")], "wer", "step")
    j = compare(runs, targets=(2.0,))
    steps = np.arange(1, 61)
    falls_to = steps[np.nonzero(smooth(10 / steps) <= 2.0)[0][0]]  # first step at or below 2.0
    assert j["runs"][0]["reached"]["2"]["step"] == falls_to > 1  # rising would say step 1
