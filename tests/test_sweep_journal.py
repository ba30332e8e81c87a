"""The sweep's journal (SWEEP_DIR/optuna.journal) when a write was cut short or the file is
damaged: a torn last record is set aside before the next append (which would otherwise
turn it into damage mid-file), and a journal Optuna cannot read is one line, untouched."""

import pytest

from test_sweep import _args, _space, _study
from zhbert import cli
from zhbert.sweep import command
from zhbert.sweep.study import JOURNAL
from zhbert.sweep.worker import claim


def _sweep(tmp_path, synthetic_data):
    """A sweep with one complete trial, no training."""
    sweep_dir, spec = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", trials=2, steps=4))
    _, study = _study(sweep_dir)
    study.tell(claim(study, spec, sweep_dir), 0.3)
    return sweep_dir


def test_a_torn_last_record_is_set_aside_before_the_next_append(tmp_path, synthetic_data, capsys):
    sweep_dir = _sweep(tmp_path, synthetic_data)
    journal = sweep_dir / JOURNAL
    whole = journal.read_bytes()
    journal.write_bytes(whole[:-37])  # a crash (or a full disk) in the middle of an append
    torn = whole[whole.rfind(b"\n", 0, len(whole) - 1) + 1:-37]
    # the report reads it as before, and appends (Optuna's create_study writes a record)
    assert cli.main(["sweep", "report", str(sweep_dir)]) == 0
    err = capsys.readouterr().err
    _, study = _study(sweep_dir)  # the old code failed here: JSONDecodeError mid-file
    study.set_user_attr("after", 1)
    _, study = _study(sweep_dir)
    assert study.user_attrs["after"] == 1 and len(study.get_trials()) == 1
    aside = list(sweep_dir.glob(JOURNAL + ".torn-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == torn
    assert journal.read_bytes().startswith(whole[:len(whole) - len(torn) - 37])
    assert str(journal) in err and str(aside[0]) in err and "half-written" in err
    assert cli.main(["sweep", "report", str(sweep_dir)]) == 0


def _damaged(tmp_path, synthetic_data, capsys, damage, line):
    sweep_dir = _sweep(tmp_path, synthetic_data)
    journal = sweep_dir / JOURNAL
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(damage(lines))
    line = len(lines) + 1 if line is None else line
    before = journal.read_bytes()
    capsys.readouterr()
    assert cli.main(["sweep", "report", str(sweep_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{journal} is damaged: line {line} " in err and "restore it from a copy" in err
    assert cli.main(["sweep", str(sweep_dir)]) == 2  # a resume too, before it trains
    assert journal.read_bytes() == before and not list(sweep_dir.glob(JOURNAL + ".torn-*"))


def test_binary_garbage_in_the_journal_is_one_line_naming_it(tmp_path, synthetic_data, capsys):
    _damaged(tmp_path, synthetic_data, capsys,
             lambda lines: b"".join(lines) + b"\x00\x01garbage{not json\n", None)


def test_a_bad_line_mid_journal_is_one_line_with_its_number(tmp_path, synthetic_data, capsys):
    # what the old resume made of a torn tail: a half record, the next record on its line
    _damaged(tmp_path, synthetic_data, capsys,
             lambda lines: b"".join(lines[:3]) + lines[3][:-20] + b"".join(lines[4:]), 4)


def test_a_json_line_that_is_no_record_is_damage_too(tmp_path, synthetic_data, capsys):
    _damaged(tmp_path, synthetic_data, capsys, lambda lines: b"".join(lines[:2]) + b"[1, 2]\n"
             + b"".join(lines[2:]), 3)


@pytest.mark.parametrize("record", [b'{"op_code": 99, "worker_id": "w"}\n', b'{"op_code": 4}\n'])
def test_a_record_optuna_cannot_replay_is_damage_too(tmp_path, synthetic_data, capsys, record):
    """An unknown operation hit Optuna's "Should not reach" assertion, and a record without
    its worker a KeyError that the sweep read as "no such study" (a review)."""
    _damaged(tmp_path, synthetic_data, capsys, lambda lines: b"".join(lines) + record, None)


def test_force_starts_a_sweep_over_a_damaged_journal(tmp_path, synthetic_data, capsys):
    """--force is the way out of a damaged journal: its check for live workers read the
    journal and stopped at the damage (a review)."""
    sweep_dir = _sweep(tmp_path, synthetic_data)
    journal = sweep_dir / JOURNAL
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:2]) + b"\x00\x01garbage\n" + b"".join(lines[2:]))
    capsys.readouterr()
    command.prepare(_args(_space(tmp_path), synthetic_data, sweep_dir, trials=2, steps=4, force=True))
    assert "starting over without knowing whether a worker is alive" in capsys.readouterr().err
    _, study = _study(sweep_dir)
    assert study.get_trials() == [] and b"garbage" not in journal.read_bytes()


def test_force_on_a_sweep_directory_is_refused_not_ignored(tmp_path, synthetic_data, capsys):
    """`zhbert sweep SWEEP_DIR --force` resumed the sweep, --force ignored, even beside a live
    worker or over a damaged journal whose message had pointed at --force (a re-test)."""
    sweep_dir = _sweep(tmp_path, synthetic_data)
    capsys.readouterr()
    assert cli.main(["sweep", str(sweep_dir), "--force"]) == 2
    assert "--force starts a sweep over from its space file" in capsys.readouterr().err
