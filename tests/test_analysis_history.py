"""Every importer on a small file written here, and the bad inputs."""

import json
import math

import numpy as np
import pytest

from zhbert.analysis.history import load_history
from zhbert.errors import UserError


def _zhbert_lines(n=5, partial=True):
    lines = [{"type": "header", "schema": "zhbert-history", "version": 1, "run": "tiny",
              "started": "2025-01-01T00:00:00", "config": {}, "precision": "fp32",
              "precision_reason": "cpu", "machine": "test", "total_steps": 1000, "tokens_per_step": 4096}]
    for i in range(1, n + 1):
        lines.append({"type": "train", "step": 100 * i, "tokens": 409600 * i, "elapsed": 20.0 * i,
                      "lr": 1e-4, "loss": 8.0 - i, "mlm_loss": 7.0 - i, "mlm_acc": 0.1 * i,
                      "nsp_loss": None, "nsp_acc": None, "sop_acc": 0.5, "grad_norm": 1.0,
                      "tokens_per_s": 20480.0})
        if i % 2 == 0:
            lines.append({"type": "eval", "step": 100 * i, "tokens": 409600 * i, "elapsed": 20.0 * i,
                          "eval_mlm_acc": 0.08 * i, "eval_mlm_acc_ci95": [0.0, 1.0],
                          "eval_mlm_loss": 6.0 - i, "eval_ppl": 100.0, "eval_nsp_acc": None,
                          "eval_sop_acc": None, "eval_masked": 1000})
    lines.append({"type": "event", "step": 300, "kind": "nonfinite_loss", "message": "skipped"})
    text = "".join(json.dumps(o) + "\n" for o in lines)
    return text + ('{"type": "train", "step": 600, "loss"' if partial else "")


def test_a_partial_last_line_of_a_run_being_written_is_left_quietly(tmp_path, capsys):
    from zhbert.runlock import WriterLock, lock_path
    (tmp_path / "history.jsonl").write_text(_zhbert_lines())
    with WriterLock(lock_path(tmp_path / "train"), "zhbert train"):
        h = load_history(tmp_path)
    assert any("unterminated last line (the run is writing it)" in n for n in h.notes)
    assert "cut off" not in capsys.readouterr().err


def test_zhbert_run_dir_with_partial_last_line(tmp_path, capsys):
    """No process writes the run: its cut last line is a lost record, warned about (a
    newcomer's truncated history was analysed without a word on the console)."""
    (tmp_path / "history.jsonl").write_text(_zhbert_lines())
    h = load_history(tmp_path)
    assert h.meta.source == "zhbert" and h.meta.run == "tiny"
    assert h.default_metric == "eval_mlm_acc" and "held-out" in h.default_reason
    assert any("last line is cut off" in n and "--resume" in n for n in h.notes)
    assert "history.jsonl: its last line is cut off" in capsys.readouterr().err
    s = h.metric("mlm_acc")
    assert s.step.tolist() == [100, 200, 300, 400, 500]
    np.testing.assert_allclose(s.y, [0.1, 0.2, 0.3, 0.4, 0.5])
    np.testing.assert_allclose(s.x("tokens"), 409600 * np.arange(1, 6))
    np.testing.assert_allclose(s.x("seconds"), 20.0 * np.arange(1, 6))
    assert h.metric().step.tolist() == [200, 400]
    assert "nsp_acc" not in h.series  # all null: not a curve
    assert h.meta.tokens_per_step == 4096 and h.meta.tokens_per_s == 20480.0
    assert h.meta.seconds_per_step == pytest.approx(0.2)
    assert h.meta.events[0]["kind"] == "nonfinite_loss"


def test_training_accuracy_is_default_without_eval_and_reason_says_so(tmp_path):
    lines = [l for l in _zhbert_lines(partial=False).splitlines() if '"eval"' not in l]
    p = tmp_path / "history.jsonl"
    p.write_text("\n".join(lines) + "\n")
    h = load_history(p)
    assert h.default_metric == "mlm_acc" and "optimistic" in h.default_reason


def test_checkpoint_eval_alone_and_merged(tmp_path):
    ck = tmp_path / "checkpoint_eval.jsonl"
    ck.write_text("".join(json.dumps({"step": s, "tokens": s * 10, "eval_mlm_acc": s / 1000,
                                      "eval_mlm_acc_ci95": [0, 1], "eval_mlm_loss": 5.0,
                                      "eval_nsp_acc": None}) + "\n" for s in (100, 200, 300)))
    h = load_history(ck)
    assert h.meta.source == "ckpt_eval" and h.default_metric == "eval_mlm_acc"
    np.testing.assert_allclose(h.metric().y, [0.1, 0.2, 0.3])
    lines = [l for l in _zhbert_lines(partial=False).splitlines() if '"eval"' not in l]
    (tmp_path / "history.jsonl").write_text("\n".join(lines) + "\n")
    h = load_history(tmp_path)
    assert h.default_metric == "eval_mlm_acc" and "mlm_acc" in h.series
    assert any("checkpoint_eval.jsonl" in n for n in h.notes)


def test_unsorted_and_duplicate_steps_keep_last(tmp_path):
    rows = [(300, 0.3), (100, 0.1), (200, 0.2), (200, 0.25)]
    p = tmp_path / "h.csv"
    p.write_text("step,mlm_acc\n" + "".join(f"{s},{v}\n" for s, v in rows))
    h = load_history(p)
    s = h.metric()
    assert s.step.tolist() == [100, 200, 300] and s.y.tolist() == [0.1, 0.25, 0.3]
    assert any("sorted" in n for n in h.notes) and any("duplicated" in n for n in h.notes)


def test_csv_with_time_columns_and_nan(tmp_path):
    p = tmp_path / "run.csv"
    p.write_text("Step,tokens,elapsed,loss,mlm_acc\n1,10,0.5,5.0,0.1\n2,20,1.0,nan,0.2\n3,30,1.5,4.0,\n")
    h = load_history(p)
    assert h.meta.source == "csv" and h.default_metric == "mlm_acc"
    assert h.metric().step.tolist() == [1, 2]  # empty cell: no point
    loss = h.metric("loss")
    assert math.isnan(loss.y[1])
    clean, dropped = loss.finite()
    assert dropped == 1 and clean.y.tolist() == [5.0, 4.0]
    np.testing.assert_allclose(loss.x("seconds"), [0.5, 1.0, 1.5])


def test_seed_json(tmp_path):
    p = tmp_path / "seed.json"
    p.write_text(json.dumps({"steps": [100, 200, 300], "mlm_acc": [0.1, 0.2, 0.3],
                             "nsp_acc": [0.5, 0.49, 0.51], "loss": [9.0, 8.0, 7.0], "lr": [1, 1, 1]}))
    h = load_history(p)
    assert h.meta.source == "seed" and h.default_metric == "mlm_acc"
    assert set(h.series) == {"mlm_acc", "nsp_acc", "loss", "lr"}
    with pytest.raises(UserError, match="tokens"):
        h.metric().x("tokens")


def test_hf_trainer_state(tmp_path):
    state = {"global_step": 30, "log_history": [
        {"epoch": 0.1, "step": 10, "loss": 5.0, "learning_rate": 1e-4, "num_input_tokens_seen": 1000},
        {"epoch": 0.1, "step": 10, "eval_loss": 4.5, "eval_mlm_acc": 0.2},
        {"epoch": 0.2, "step": 20, "loss": 4.0, "learning_rate": 1e-4, "num_input_tokens_seen": 2000},
        {"epoch": 0.2, "step": 20, "eval_loss": 3.9, "eval_mlm_acc": 0.3},
        {"epoch": 0.3, "step": 30, "train_runtime": 60.0, "train_steps_per_second": 0.5,
         "train_loss": 4.5, "total_flos": 1.0}]}
    (tmp_path / "trainer_state.json").write_text(json.dumps(state))
    h = load_history(tmp_path)
    assert h.meta.source == "hf" and h.default_metric == "eval_mlm_acc"
    assert h.metric("loss").y.tolist() == [5.0, 4.0]
    assert h.metric("loss").x("tokens").tolist() == [1000, 2000]
    assert "train_loss" not in h.series and h.meta.seconds_per_step == pytest.approx(2.0)
    assert h.meta.tokens_per_step == 100.0  # from num_input_tokens_seen, as for zhbert's records


def test_tensorboard_events(tmp_path):
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    w = EventFileWriter(str(tmp_path))
    for step in (10, 20, 30):
        for tag, v in (("train/mlm_acc", step / 100), ("loss", 10 - step / 10)):
            summ = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=v)])
            w.add_event(event_pb2.Event(wall_time=1000.0 + step, step=step, summary=summ))
    w.close()
    h = load_history(tmp_path, metric="train/mlm_acc")
    assert h.meta.source == "tensorboard"
    np.testing.assert_allclose(h.metric().y, [0.1, 0.2, 0.3], rtol=1e-6)
    np.testing.assert_allclose(h.metric("loss").x("seconds"), [0, 10, 20])
    files = list(tmp_path.glob("events.out.tfevents*"))
    assert load_history(files[0]).series.keys() == h.series.keys()


@pytest.mark.parametrize("content, match", [
    ("", "no data points"),
    ('{"type": "header", "run": "x"}\n', "no data points"),
    ('not json\n{"type": "header", "run": "x"}\n', "no data points"),
])
def test_bad_jsonl(tmp_path, content, match):
    p = tmp_path / "history.jsonl"
    p.write_text(content)
    with pytest.raises(UserError, match=match):
        load_history(p)


def test_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_history(tmp_path / "missing.jsonl")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(UserError, match="unknown history format"):
        load_history(tmp_path / "x.txt")
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt"):
        load_history(tmp_path / "a.json")
    (tmp_path / "b.json").write_text(json.dumps({"steps": [1, 2], "mlm_acc": [0.1]}))
    with pytest.raises(UserError, match="truncated"):
        load_history(tmp_path / "b.json")
    (tmp_path / "c.csv").write_text("epoch,acc\n1,0.5\n")
    with pytest.raises(UserError, match="no 'step' column"):
        load_history(tmp_path / "c.csv")
    (tmp_path / "d.csv").write_text("step,mlm_acc\n1,0.5\n")
    with pytest.raises(UserError, match="metric 'eval_mlm_acc' is not in .*mlm_acc"):
        load_history(tmp_path / "d.csv", metric="eval_mlm_acc")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no TensorBoard event files"):
        load_history(empty)


def test_corrupt_line_is_warned_skipped_and_noted(tmp_path, capsys):
    """zhbert.history's policy: the records around a corrupt line are kept (it used to
    abort the whole analysis), the line is named on stderr and in the notes."""
    text = _zhbert_lines(partial=False).splitlines(keepends=True)
    (tmp_path / "history.jsonl").write_text("".join(text[:4]) + '{"type": "tr\n' + "".join(text[4:]))
    h = load_history(tmp_path)
    assert h.metric("mlm_acc").step.tolist() == [100, 200, 300, 400, 500]
    assert "history.jsonl, line 5: not a JSON record" in capsys.readouterr().err
    assert any("skipped 1 corrupt line(s) (line 5)" in n for n in h.notes)


def test_series_keep_the_recorded_intervals(tmp_path):
    (tmp_path / "history.jsonl").write_text(_zhbert_lines())
    s = load_history(tmp_path).metric("eval_mlm_acc")
    assert s.ci95.tolist() == [[0.0, 1.0], [0.0, 1.0]]
    assert load_history(tmp_path).metric("mlm_acc").ci95 is None
    kept = s.select(np.array([False, True]))
    assert kept.step.tolist() == [400] and kept.ci95.tolist() == [[0.0, 1.0]]


def test_meta_names_real_tokens_and_padded_positions(tmp_path):
    """The header's tokens_per_step counts padded positions; what the reader calls tokens per
    step comes from the records' real-token counts (here 3,000 of 4,096 positions)."""
    lines = [json.loads(l) for l in _zhbert_lines(partial=False).splitlines()]
    for o in lines:
        if "tokens" in o:
            o["tokens"] = 3000 * o["step"]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(o) + "\n" for o in lines))
    h = load_history(tmp_path)
    assert h.meta.tokens_per_step == 3000.0 and h.meta.positions_per_step == 4096.0
    assert h.meta.to_json()["positions_per_step"] == 4096.0
    from zhbert.analysis import predict_steps
    p = predict_steps(h, 0.3, metric="mlm_acc", n_boot=0)  # steps -> tokens with real tokens
    assert p.tokens.value == pytest.approx(3000 * p.steps.value)


def test_series_come_in_the_order_the_file_names_them(tmp_path):
    (tmp_path / "history.jsonl").write_text(_zhbert_lines())
    assert list(load_history(tmp_path).series) == [
        "lr", "loss", "mlm_loss", "mlm_acc", "sop_acc", "grad_norm", "eval_mlm_acc", "eval_mlm_loss",
        "eval_ppl"]


def test_a_data_or_sweep_directory_is_named_as_what_it_is(synthetic_data, tmp_path):
    """Given where a run was expected, zhbert's other folders said "no TensorBoard event
    files"; they are named, with what to give instead."""
    from zhbert.analysis.history import load_history
    with pytest.raises(UserError, match="is a data directory .*zhbert train --data"):
        load_history(synthetic_data)
    (tmp_path / "sweep.json").write_text("{}")
    with pytest.raises(UserError, match="is a sweep, not a run: give one of its trials"):
        load_history(tmp_path)
