"""Faults a tester found in predict, backtest --predict, compare and analyze: each one's fix."""

import argparse
import json
import shutil
from pathlib import Path

import pytest

from cli_helpers import parse
from zhbert import argtypes
from zhbert.analysis.forecast import plan
from zhbert.cli import main

DATA = Path(__file__).parent / "data"
SEED = Path("/work/shared/reference/seed_training_history_100k.json")  # read only


def _run(argv, capsys) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _refused(argv, capsys) -> str:
    rc, _, err = _run(argv, capsys)
    assert rc == 2 and err.startswith("zhbert") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    return err


def _final(p, steps: int):
    return p.accuracy(p.base.stretched(steps), [steps])


def _history(src: Path, dst: Path, keep=lambda rec: True, edit=lambda rec: rec) -> Path:
    """A copy of a zhbert run's history with records left out or edited."""
    dst.mkdir(parents=True)
    recs = [json.loads(line) for line in (src / "history.jsonl").read_text().splitlines() if line.strip()]
    (dst / "history.jsonl").write_text("".join(json.dumps(edit(r)) + "\n" for r in recs if keep(r)))
    return dst


def _trainer(dst: Path, keep=lambda rec: True, edit=lambda rec: rec) -> Path:
    """A copy of the Trainer run's trainer_state.json with log entries left out or edited."""
    state = json.loads((DATA / "hf-tiny-bert" / "trainer_state.json").read_text())
    state["log_history"] = [edit(dict(r)) for r in state["log_history"] if keep(r)]
    dst.mkdir(parents=True)
    (dst / "trainer_state.json").write_text(json.dumps(state))
    return dst


# 1. --seed reaches the law's bootstrap

def test_the_seed_reaches_the_laws_refits():
    a, b = (_final(plan([DATA / "tiny-2000"], n_boot=20, seed=s), 4000) for s in (0, 7))
    assert (a.lo80, a.hi80) != (b.lo80, b.hi80)
    default = _final(plan([DATA / "tiny-2000"], n_boot=20), 4000)
    assert (default.lo80, default.hi80) == (a.lo80, a.hi80)  # the default is seed 0, as before


def test_predict_seed_changes_the_intervals(capsys):
    said = [_run(["predict", DATA / "tiny-2000", "--steps", "4000", "--n-boot", "20", "--seed", s],
                 capsys)[1] for s in (0, 7, 0)]
    assert said[0] != said[1] and said[0] == said[2]


def test_outlook_takes_the_seed():
    from zhbert.analysis.outlook import outlook
    a, b = (outlook(DATA / "tiny-2000", n_boot=20, seed=s).final for s in (0, 7))
    assert (a.lo80, a.hi80) != (b.lo80, b.hi80)


# 2. a bootstrap of 1..19 refits is refused by the command line

@pytest.mark.parametrize("text", ["1", "2", "19"])
def test_too_few_refits_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="at least 20 refits.*0 takes no refits: the laws. delta-method intervals"):
        argtypes.boot_count(text)


@pytest.mark.parametrize("command", ["predict", "backtest", "analyze"])
def test_every_n_boot_option_refuses_one_refit_and_takes_its_ends(command, capsys):
    with pytest.raises(SystemExit) as exc:
        parse(command, ["RUN", "--n-boot", "1"])
    assert exc.value.code == 2 and "at least 20 refits" in capsys.readouterr().err
    for ok in ("0", "20"):
        assert parse(command, ["RUN", "--n-boot", ok]).n_boot == int(ok)
    assert parse(command, ["RUN"]).n_boot == 200


# 3. a run given twice to backtest --predict or compare

def test_backtest_refuses_the_target_among_its_sources(tmp_path, capsys):
    shutil.copytree(DATA / "tiny-4000", tmp_path / "t4")
    err = _refused(["backtest", "--predict", DATA / "tiny-4000", "--from", DATA / "tiny-2000",
                    f"{DATA / 'tiny-4000'}/"], capsys)
    assert "is the same run as" in err and "its own answer" in err
    err = _refused(["backtest", "--predict", DATA / "tiny-4000", "--from", tmp_path / "t4"], capsys)
    assert "are one run" in err and "t4" in err


def test_compare_refuses_a_run_compared_with_itself(tmp_path, capsys):
    err = _refused(["compare", DATA / "tiny-2000", DATA / "tiny-2000" / "history.jsonl",
                    "--out", tmp_path / "c"], capsys)
    assert "is the same run as" in err and not (tmp_path / "c").exists()
    shutil.copytree(DATA / "tiny-2000", tmp_path / "copy")
    err = _refused(["compare", DATA / "tiny-2000", tmp_path / "copy", "--out", tmp_path / "c"], capsys)
    assert "are one run" in err


def test_compare_refuses_a_whole_copy_of_a_foreign_history_but_not_its_first_half(tmp_path, capsys):
    copy = _trainer(tmp_path / "copy")
    err = _refused(["compare", DATA / "hf-tiny-bert", copy, "--out", tmp_path / "c"], capsys)
    assert "are one run" in err and str(copy) in err
    half = _trainer(tmp_path / "half", keep=lambda r: r["step"] <= 1000)
    rc, _, _ = _run(["compare", DATA / "hf-tiny-bert", half, "--out", tmp_path / "c", "--json"], capsys)
    assert rc == 0  # a run against its own first half is a comparison compare makes on purpose


# 4. a Trainer run given as two snapshots

def test_a_trainer_snapshot_beside_its_later_state_is_one_run(tmp_path, capsys):
    snap = _trainer(tmp_path / "snap", keep=lambda r: r["step"] <= 1200)
    err = _refused(["predict", DATA / "hf-tiny-bert", snap, "--steps", "3000", "--n-boot", "0"], capsys)
    assert "are one run" in err and str(snap) in err and str(DATA / "hf-tiny-bert") in err


def test_two_trainer_runs_of_other_values_are_still_fitted_together(tmp_path):
    other = _trainer(tmp_path / "other", edit=lambda r: {**r, "eval_loss": r["eval_loss"] + 0.01}
                     if "eval_loss" in r else r)
    assert len(plan([DATA / "hf-tiny-bert", other], n_boot=0).runs) == 2


# 5. a foreign history beside a zhbert run; a run of unknown masking

@pytest.mark.parametrize("foreign", ["hf-tiny-bert", "seed"])
def test_a_foreign_history_beside_a_zhbert_run_is_warned_about(tmp_path, foreign):
    path = DATA / "hf-tiny-bert" if foreign == "hf-tiny-bert" else SEED
    if not path.exists():
        pytest.skip("the seed's history is not here")
    notes = plan([DATA / "tiny-2000", path], n_boot=0).notes
    said = [n for n in notes if "no zhbert config" in n]
    assert len(said) == 1 and said[0].startswith("warning:") and "tiny-2000" in said[0]


def test_a_run_of_unknown_masking_beside_a_recorded_rule_is_noted(tmp_path):
    ruled = _history(DATA / "tiny-4000", tmp_path / "ruled",
                     edit=lambda r: {**r, "masking": "tokens/2", "run": "ruled"}
                     if r.get("type") == "header" else r)
    notes = plan([DATA / "tiny-2000", ruled], n_boot=0).notes
    said = [n for n in notes if "no masking rule" in n]
    assert len(said) == 1 and not said[0].startswith("warning") and "tiny-2000" in said[0]
    assert "tokens/2" in said[0]
    assert not any("no masking rule" in n for n in plan([DATA / "tiny-2000", DATA / "tiny-4000"],
                                                         n_boot=0).notes)


# 6. messages that named no file

def test_a_killed_run_too_short_for_the_law_is_named(tmp_path, capsys):
    killed = _history(DATA / "tiny-2000", tmp_path / "killed", keep=lambda r: r.get("step", 0) <= 500)
    err = _refused(["predict", killed, "--target", "0.3"], capsys)
    assert str(killed) in err and "(have 2)" in err


def test_a_run_fitted_on_its_training_loss_says_so_when_too_short(tmp_path, capsys):
    noeval = _history(DATA / "tiny-2000", tmp_path / "noeval",
                      keep=lambda r: r.get("step", 0) <= 450 and (r.get("type") != "eval" or r["step"] == 50))
    err = _refused(["predict", noeval, "--target", "0.3"], capsys)
    assert str(noeval) in err and "1 held-out loss point" in err and "points of loss" in err
    assert "eval points" not in err


def test_a_seed_style_json_with_a_string_names_the_file(tmp_path, capsys):
    bad = tmp_path / "strval.json"
    bad.write_text(json.dumps({"steps": [100, 200, 300], "mlm_acc": [0.1, "x", 0.3]}))
    assert str(bad) in _refused(["predict", bad, "--target", "0.3"], capsys)


def test_a_trainer_state_without_eval_entries_names_the_file(tmp_path, capsys):
    noeval = _trainer(tmp_path / "hfnoeval", keep=lambda r: "eval_loss" not in r)
    err = _refused(["predict", noeval, "--target", "0.3", "--n-boot", "0"], capsys)
    assert str(noeval) in err and "no accuracy" in err


# 7. compare's plateau warning words a target as a target

def test_compares_plateau_warning_names_the_target_not_a_forecast():
    from zhbert.compare import compare, load_runs
    j = compare(load_runs([str(DATA / n) for n in ("tiny-1000", "tiny-2000", "tiny-4000")], None, "step"),
                targets=(0.3, 0.5))
    said = [w for w in j["warnings"] if "above the best accuracy" in w]
    assert said and not any("the forecast (50.0%)" in w for w in said)
    assert any("the target 50.0%" in w and "lower estimate" in w for w in said)


# 8. schedule names in any case

def test_a_schedule_name_is_read_in_any_case(capsys):
    argv = ["predict", DATA / "tiny-2000", "--steps", "1500", "--n-boot", "0", "--schedule"]
    rc, upper, _ = _run([*argv, "WSD"], capsys)
    assert rc == 0 and upper == _run([*argv, "wsd"], capsys)[1]
    assert "--schedule Foo: unknown" in _refused([*argv, "Foo"], capsys)


def test_a_source_given_twice_to_backtest_is_not_called_a_leak(capsys):
    """backtest --predict tiny-4000 --from tiny-2000 tiny-2000 said "the run --predict names is
    among --from" (a review): the repeat is among the sources."""
    from zhbert.cli import main
    assert main(["backtest", "--predict", str(DATA / "tiny-4000"), "--from", str(DATA / "tiny-2000"),
                 str(DATA / "tiny-2000"), "--n-boot", "0"]) == 2
    err = capsys.readouterr().err
    assert "give each run once" in err and "--predict names" not in err, err


def test_backtest_names_a_source_too_short_for_the_law(tmp_path, capsys):
    """backtest --predict tiny-4000 --from KILLED said "needs at least 6 eval points ... (have
    2)" naming no file (a review; predict with one run already named it)."""
    import shutil

    from zhbert.cli import main
    killed = tmp_path / "killed"
    shutil.copytree(DATA / "tiny-2000", killed)
    lines = (killed / "history.jsonl").read_text().splitlines(keepends=True)
    (killed / "history.jsonl").write_text("".join(lines[:60]))  # killed soon after its switch
    assert main(["backtest", "--predict", str(DATA / "tiny-4000"), "--from", str(killed), "--n-boot", "0"]) == 2
    err = capsys.readouterr().err
    assert f"{killed}: a schedule-aware law needs at least" in err, err
