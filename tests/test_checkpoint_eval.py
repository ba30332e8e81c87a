import json
import shutil

import pytest

from trained_run import trained_run  # noqa: F401  (session fixture)
from zhbert.run import EVAL_RESULTS as RESULTS, append_result, read_results
from zhbert.cli import main as cli_main
from zhbert.history import iter_records


@pytest.fixture()
def run(trained_run, tmp_path):
    """A private copy: these tests write checkpoint_eval.jsonl."""
    return shutil.copytree(trained_run, tmp_path / "run")


def _lines(run):
    return (run / RESULTS).read_text(encoding="utf-8").splitlines()


def test_all_checkpoints_match_the_history_then_skip_and_resume(run):
    assert cli_main(["eval", str(run), "--all-checkpoints"]) == 0
    recs = read_results(run / RESULTS)
    assert [r["step"] for r in recs] == [10, 20, 30]
    keys = {"step", "tokens", "split", "max_sequences", "eval_mlm_acc", "eval_mlm_acc_ci95", "eval_mlm_loss",
            "eval_ppl", "eval_nsp_acc", "eval_sop_acc", "eval_masked"}
    assert all(set(r) == keys and r["split"] == "validation" for r in recs)
    # Same fixed eval set and the same weights: the figures training logged at those steps.
    history = {r["step"]: r for r in iter_records(run / "history.jsonl") if r["type"] == "eval"}
    for r in recs:
        h = history[r["step"]]
        assert r["eval_masked"] == h["eval_masked"] and r["tokens"] == h["tokens"]
        assert r["eval_mlm_acc"] == pytest.approx(h["eval_mlm_acc"])
        assert r["eval_mlm_loss"] == pytest.approx(h["eval_mlm_loss"], rel=1e-5)
    before = _lines(run)
    assert cli_main(["eval", str(run), "--all-checkpoints"]) == 0
    assert _lines(run) == before  # nothing re-done
    (run / RESULTS).write_text("\n".join(before[:-1]) + "\n", encoding="utf-8")
    assert cli_main(["eval", str(run), "--all-checkpoints"]) == 0
    after = _lines(run)
    old, new = json.loads(before[-1]), json.loads(after[-1])
    assert len(after) == 3 and new["step"] == old["step"] == 30
    assert new["eval_mlm_loss"] == pytest.approx(old["eval_mlm_loss"], rel=1e-6)


def test_torn_last_line_is_replaced(run):
    """A kill in the middle of a write leaves a partial line; the rerun starts clean."""
    assert cli_main(["eval", str(run), "--checkpoint", "10"]) == 0
    with open(run / RESULTS, "a", encoding="utf-8") as f:
        f.write('{"step": 20, "tok')
    assert cli_main(["eval", str(run), "--checkpoint", "20"]) == 0
    assert [json.loads(x)["step"] for x in _lines(run)] == [10, 20]


def test_a_torn_line_longer_than_a_block_costs_no_whole_record(tmp_path):
    """A torn last line over 64 KiB: the cut looked back one block only and, finding no
    newline there, cut that block, leaving the torn line's start (a review)."""
    path = tmp_path / "r.jsonl"
    append_result(path, {"step": 1})
    with open(path, "ab") as f:
        f.write(b'{"step": 2, "note": "' + b"x" * 100_000)
    append_result(path, {"step": 3})
    assert path.read_text(encoding="utf-8").splitlines() == ['{"step": 1}', '{"step": 3}']


def test_default_latest_other_split_and_fewer_sequences(run):
    assert cli_main(["eval", str(run)]) == 0
    assert cli_main(["eval", str(run), "--split", "test", "--max-sequences", "8"]) == 0
    recs = read_results(run / RESULTS)
    assert [(r["step"], r["split"]) for r in recs] == [(30, "validation"), (30, "test")]
    assert 0 < recs[1]["eval_masked"] < recs[0]["eval_masked"]


def test_unknown_checkpoint_and_missing_run(run, tmp_path, capsys):
    assert cli_main(["eval", str(run), "--checkpoint", "15"]) == 2
    assert "no checkpoint at step 15; it has steps 10, 20, 30" in capsys.readouterr().err
    assert not (run / RESULTS).exists()
    assert cli_main(["eval", str(tmp_path / "nope")]) == 2


def test_append_result_after_partial_line(tmp_path):
    path = tmp_path / "r.jsonl"
    append_result(path, {"a": 1})
    path.write_bytes(path.read_bytes() + b'{"a": 2')
    append_result(path, {"a": 3})
    assert read_results(path) == [{"a": 1}, {"a": 3}]


def test_a_directory_that_is_no_run_says_what_to_give(tmp_path):
    from zhbert.run import open_run
    from zhbert.errors import UserError

    with pytest.raises(UserError, match=r"run config not found: .*config.json; .* is not a run "
                                        r"directory; give the --out of a `zhbert train` run"):
        open_run(tmp_path)
    with pytest.raises(UserError, match="run directory not found: .*; give the --out"):
        open_run(tmp_path / "nope")


def test_another_sequence_count_is_another_evaluation(run, capsys):
    """A rerun with another --max-sequences said "nothing to evaluate" and kept the figures
    of the first count; the newest record of a step is the one readers take."""
    assert cli_main(["eval", str(run)]) == 0
    assert cli_main(["eval", str(run), "--max-sequences", "8"]) == 0
    recs = read_results(run / RESULTS)
    assert [(r["step"], r["max_sequences"]) for r in recs][-1] == (30, 8) and len(recs) == 2
    assert recs[1]["eval_masked"] < recs[0]["eval_masked"]
    capsys.readouterr()
    assert cli_main(["eval", str(run), "--max-sequences", "8"]) == 0
    assert "nothing to evaluate" in capsys.readouterr().out and len(read_results(run / RESULTS)) == 2


def test_the_sequence_cap_is_no_metric_of_the_analysis(run):
    """eval's max_sequences field read as a metric ("added eval_ppl, max_sequences from
    checkpoint_eval.jsonl") in analyze and the dashboard."""
    from zhbert.analysis import load_history
    assert cli_main(["eval", str(run), "--all-checkpoints"]) == 0
    h = load_history(run)
    assert "max_sequences" not in h.series and not any("max_sequences" in n for n in h.notes)


def test_a_quick_look_at_fewer_sequences_does_not_replace_the_full_figure(run):
    """Readers took each step's last record: `eval --max-sequences 8` after a full eval
    replaced the step's figure in the probe relation and the dashboard (a review)."""
    from zhbert.run import evals_by_step
    assert cli_main(["eval", str(run)]) == 0
    assert cli_main(["eval", str(run), "--max-sequences", "8"]) == 0
    full, quick = read_results(run / RESULTS)
    assert evals_by_step([full, quick])[30] is full and evals_by_step([quick, full])[30] is full
