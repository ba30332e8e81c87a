"""The planner's answers on awkward inputs: NaN accuracy points, copies of one run, options
a mode cannot use, runs of other vocabularies, the bands' wording, limits and short runs."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from zhbert.analysis.forecast import plan
from zhbert.cli import main

DATA = Path(__file__).parent / "data"


def _copy(src: Path, dst: Path, edit=lambda rec: rec, upto: int | None = None) -> Path:
    """A copy of a test run, each history record passed through ``edit``, cut after ``upto``."""
    dst.mkdir(parents=True)
    shutil.copy(src / "config.json", dst / "config.json")
    out = []
    for line in (src / "history.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if upto is not None and rec.get("step", 0) > upto:
            continue
        out.append(json.dumps(edit(rec)))
    (dst / "history.jsonl").write_text("\n".join(out) + "\n")
    return dst


def _strict_json(text: str):
    """JSON as a strict reader takes it: a bare NaN / Infinity is an error."""
    def refuse(c):
        raise ValueError(f"bare {c} in JSON")
    return json.loads(text, parse_constant=refuse)


def _predict(argv, capsys) -> str:
    assert main(["predict", *map(str, argv)]) == 0
    return capsys.readouterr().out


# ----------------------------------------------------------------------------- 1: NaN accuracy

def _nan_acc(rec):
    if rec.get("type") == "eval" and rec["step"] in (2000, 2500, 3000):
        rec["eval_mlm_acc"] = float("nan")
    return rec


def test_a_nan_accuracy_point_is_left_out_like_a_nan_loss(tmp_path, capsys):
    run = _copy(DATA / "tiny-4000", tmp_path / "nanacc", _nan_acc)
    p = plan([run], n_boot=0)
    assert np.all(np.isfinite(p.runs[0].acc)) and 2000 not in p.runs[0].curve.steps
    f = p.accuracy(p.base.stretched(8000), [8000])
    assert all(np.isfinite([f.mean, f.lo80, f.hi80, f.lo95, f.hi95]))
    assert p.climb_warning(f.mean) is None  # was "is nan percentage points above ... (nan%)"
    out = _strict_json(_predict([run, "--steps", 8000, "--n-boot", 0, "--json"], capsys))
    f = out["forecast"]
    assert f["warning"] is None and all(np.isfinite(f["final_accuracy"]["interval80"]))


# ----------------------------------------------------------------------------- 2: copies of one run

@pytest.mark.parametrize("upto", [None, 1900])  # a copied folder, a copy cut short
def test_a_copy_of_a_run_is_refused_as_the_same_run(tmp_path, capsys, upto):
    copy = _copy(DATA / "tiny-4000", tmp_path / "copy", upto=upto)
    assert main(["predict", str(DATA / "tiny-4000"), str(copy), "--steps", "8000", "--n-boot", "0"]) == 2
    err = capsys.readouterr().err
    assert f"{copy} and {DATA / 'tiny-4000'} are one run (copies" in err and len(err.splitlines()) == 1


def test_other_runs_of_one_config_started_in_one_second_are_still_fitted_together():
    # tiny-2000 and tiny-4000 started in the same second (their headers say so): other runs
    p = plan([DATA / "tiny-2000", DATA / "tiny-4000"], n_boot=0)
    assert [r.curve.name for r in p.runs] == ["tiny-2000", "tiny-4000"]


# ----------------------------------------------------------------------------- 3: options a mode ignores

@pytest.mark.parametrize("mode,option", [
    (["--law", "none"], ["--lr", "0.01"]), (["--law", "none"], ["--schedule", "constant"]),
    (["--law", "none"], ["--warmup", "50"]), (["--model", "power"], ["--lr", "0.01"]),
    (["--x", "tokens"], ["--schedule", "wsd"])])
def test_schedule_options_are_refused_where_the_schedule_free_families_answer(capsys, mode, option):
    rc = main(["predict", str(DATA / "tiny-4000"), "--target", "0.42", "--n-boot", "0", *mode, *option])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert f"error: {option[0]}: the schedule-free curve families" in err


# ----------------------------------------------------------------------------- 4: other vocabularies

def _other_vocab(tmp_path: Path, size: int | None, sha: str) -> Path:
    run = _copy(DATA / "tiny-2000", tmp_path / "vocab")
    meta = json.loads((run / "config.json").read_text())
    meta["data"].update(vocab_size=size or meta["data"]["vocab_size"], vocab_sha256=sha)
    (run / "config.json").write_text(json.dumps(meta))
    return run


@pytest.mark.parametrize("size,clause", [(21128, "vocabulary: 5,036 -> 21,128 tokens"),
                                         (None, "vocabulary: another vocab.txt of 5,036 tokens")])
def test_runs_of_other_vocabularies_are_warned_about(tmp_path, size, clause):
    p = plan([DATA / "tiny-4000", _other_vocab(tmp_path, size, "0" * 64)], n_boot=0)
    assert any(n.startswith("warning: tiny-2000 differs from tiny-4000 in ") and clause in n
               for n in p.notes), p.notes


def test_runs_of_one_vocabulary_get_no_vocabulary_warning():
    p = plan([DATA / "tiny-4000", DATA / "tiny-2000"], n_boot=0)
    assert p.runs[0].setup["vocab"] == p.runs[1].setup["vocab"]
    assert not any("vocabulary" in n for n in p.notes)


# ----------------------------------------------------------------------------- 5: the two bands

@pytest.mark.parametrize("n_boot", [0, 40])
def test_the_curve_band_is_the_final_accuracy_band_without_the_noise(n_boot):
    """At the last step, the curve's band (the expected accuracy) lies inside the final
    accuracy's (the same method, plus the evaluation's noise), as predict --json's
    "bands" says: the delta method's curve band read 49-65% beside a bootstrap 51-58%."""
    p = plan([DATA / "tiny-4000"], n_boot=n_boot)
    sched = p.base.stretched(64000)
    final, expected = p.accuracy(sched, [64000]), p.accuracy(sched, [64000], noise=False)
    c = p.curve(sched, [8000, 64000])
    assert final.lo80 <= c["acc_lo80"][-1] < c["acc_hi80"][-1] <= final.hi80
    assert c["acc_lo80"][-1] == pytest.approx(expected.lo80, abs=0.005)
    assert c["acc_hi80"][-1] == pytest.approx(expected.hi80, abs=0.005)


# ----------------------------------------------------------------------------- 6: limits and marks

def test_no_negative_loss_is_printed_as_the_laws_floor(capsys):
    out = _predict([DATA / "tiny-4000", "--target", 0.9, "--n-boot", 0], capsys)
    line = next(x for x in out.splitlines() if x.startswith("not reachable"))
    assert "floor (L0 less a full anneal falls below 0" in line and "-0." not in line, line
    p = plan([DATA / "tiny-4000"], n_boot=0)
    assert p.raw_floor() < 0 and p.floor() == 0.0  # L0 0 less C 0.199
    assert p.limit() == pytest.approx(float(p.accmap(0.0)))


def test_the_curve_is_printed_only_where_the_law_was_fitted(tmp_path, capsys):
    cut = _copy(DATA / "tiny-4000", tmp_path / "cut1500", upto=1500)
    first = plan([cut], n_boot=0).fitted_from
    j = json.loads(_predict([cut, "--steps", 900, "--n-boot", 0, "--json"], capsys))
    steps = j["forecast"]["curve"]["step"]
    assert min(steps) >= first and steps[-1] == 900  # was step 181, loss 80.7
    assert all(v < 20 for v in j["forecast"]["curve"]["loss"])


def test_a_family_at_the_target_from_step_0_reads_already_reached(capsys):
    out = _predict([DATA / "tiny-4000", "--target", 0.2, "--law", "none", "--n-boot", 0], capsys)
    by_model = next(x for x in out.splitlines() if x.startswith("by model: "))
    assert "linear already reached" in by_model and "linear 0" not in by_model, by_model


# ----------------------------------------------------------------------------- 7: shorter runs

@pytest.mark.parametrize("steps,warned", [(1000, True), (2000, False), (8000, False)])
def test_a_run_whose_lr_falls_before_the_fitted_run_left_its_plateau_is_warned_about(capsys, steps, warned):
    """tiny-4000 left its plateau by step 900: forecast 1,000 steps of its schedule read 29.5%
    (95%: 27.6-30.8%) while tiny-1000, whose lr had decayed by then, stayed at 14.1%."""
    j = json.loads(_predict([DATA / "tiny-4000", "--steps", steps, "--n-boot", 0, "--json"], capsys))
    warning = j["forecast"]["warning"] or ""
    assert ("the step by which tiny-4000 had left the plateau" in warning) == warned, warning


def test_a_target_reached_by_a_short_run_is_warned_about_too(capsys):
    j = json.loads(_predict([DATA / "tiny-4000", "--target", 0.3, "--n-boot", 0, "--json"], capsys))
    assert j["target"]["reachable"] and "had left the plateau" in (j["target"]["warning"] or "")


def test_backtest_names_how_the_target_differs_from_the_runs_it_is_forecast_from(capsys):
    """backtest --predict tiny-2000 --from demo-1000 (other masking and dropout) had said
    nothing of it, where predict warns."""
    assert main(["backtest", "--predict", str(DATA / "tiny-2000"), "--from", str(DATA / "demo-1000"),
                 "--n-boot", "0"]) == 0
    out = capsys.readouterr().out
    assert "note: warning: tiny-2000 differs from" in out and "data.mask_prob: 0.3 -> 0.15" in out
    assert main(["backtest", "--predict", str(DATA / "tiny-4000"), "--from", str(DATA / "tiny-2000"),
                 "--n-boot", "0"]) == 0
    assert "differs from" not in capsys.readouterr().out  # one setup: no such note
