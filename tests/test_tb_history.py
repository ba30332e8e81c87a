"""zhbert's own TensorBoard events read back as the history they were written from."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from zhbert.analysis.history import load_history


def _records(n=4):
    """Train and eval records shaped as the trainer logs them (trainloop._log / _eval)."""
    out = []
    for i in range(1, n + 1):
        out.append({"type": "train", "step": 10 * i, "tokens": 4000 * i, "elapsed": 2.0 * i,
                    "lr": 1e-4 * i, "loss": 9.0 - i, "mlm_loss": 8.0 - i, "mlm_acc": 0.05 * i,
                    "nsp_loss": 0.69, "nsp_acc": 0.5, "sop_acc": None, "grad_norm": 1.5,
                    "tokens_per_s": 2000.0, "data_wait": 0.03})
        out.append({"type": "eval", "step": 10 * i, "tokens": 4000 * i, "elapsed": 2.0 * i + 0.5,
                    "eval_mlm_acc": 0.04 * i, "eval_mlm_acc_ci95": [0.0, 0.5],
                    "eval_mlm_loss": 7.0 - i, "eval_ppl": 500.0, "eval_nsp_acc": 0.5,
                    "eval_sop_acc": None, "eval_masked": 1976})
    return out


def _write_like_the_trainer(run_dir, records):
    """tb/ through the trainer's own writer and function, history.jsonl beside it."""
    pytest.importorskip("tensorboard")
    from zhbert.tblog import TensorBoardLog
    from zhbert.trainloop import _tb

    writer = TensorBoardLog(run_dir)
    for rec in records:
        _tb(SimpleNamespace(tb=writer), rec)
    writer.close()
    header = {"type": "header", "schema": "zhbert-history", "version": 1, "run": "run"}
    (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [header, *records]))


def test_zhbert_tensorboard_reads_as_its_history(tmp_path):
    _write_like_the_trainer(tmp_path, _records())
    tb, hist = load_history(tmp_path / "tb"), load_history(tmp_path)
    assert tb.meta.source == "tensorboard"
    assert tb.default_metric == "eval_mlm_acc" and "held-out" in tb.default_reason
    assert set(tb.series) == set(hist.series)  # lr, loss, eval_mlm_acc, ...; no elapsed/tokens
    np.testing.assert_allclose(tb.metric("lr").y, [1e-4, 2e-4, 3e-4, 4e-4], rtol=1e-6)
    np.testing.assert_allclose(tb.metric().y, hist.metric().y, rtol=1e-6)
    np.testing.assert_allclose(tb.metric().x("seconds"), [2.5, 4.5, 6.5, 8.5])  # elapsed
    np.testing.assert_allclose(tb.metric("loss").x("tokens"), [4000, 8000, 12000, 16000])
    assert tb.meta.tokens_per_step == hist.meta.tokens_per_step == 400
    assert tb.meta.seconds_per_step == pytest.approx(hist.meta.seconds_per_step)
    events = next((tmp_path / "tb").glob("events.out.tfevents*"))
    assert load_history(events).series.keys() == tb.series.keys()


def test_other_tools_train_and_eval_tags_keep_their_names(tmp_path):
    """A Trainer's tags also start train/ and eval/, but are not zhbert's records."""
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    for step in (10, 20, 30):
        for tag, v in (("train/loss", 5 - step / 10), ("train/learning_rate", 1e-4),
                       ("train/epoch", step / 30), ("eval/loss", 4 - step / 10), ("eval/runtime", 3.0)):
            writer.add_scalar(tag, v, step)
    writer.close()
    h = load_history(tmp_path)
    assert set(h.series) == {"train/loss", "train/learning_rate", "train/epoch", "eval/loss",
                             "eval/runtime"}
    np.testing.assert_allclose(h.metric("eval/loss").y, [3, 2, 1], rtol=1e-6)


def test_a_runs_tb_folder_forecasts_as_the_run(tmp_path):
    """The planner reads RUN/tb with its run's config.json (the schedule, the length
    warm-up to leave out, the run's length) and the same real tokens per step: before,
    the tb folder's law was fitted through the warm-up and said "tokens unknown"."""
    import shutil
    from pathlib import Path
    from zhbert.analysis.plan_runs import load_run
    from zhbert.history import iter_records
    src = Path(__file__).parent / "data" / "demo-1000"
    shutil.copy(src / "config.json", tmp_path / "config.json")
    records = [r for r in iter_records(src / "history.jsonl") if r["type"] in ("train", "eval")]
    _write_like_the_trainer(tmp_path, records)
    (tmp_path / "history.jsonl").unlink()   # the tb folder alone, beside the run's config
    run, tb = load_run(src), load_run(tmp_path / "tb")
    assert tb.curve.schedule == run.curve.schedule and tb.curve.fit_from == run.curve.fit_from
    assert tb.tokens_per_step == pytest.approx(run.tokens_per_step)
