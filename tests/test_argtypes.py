"""The commands' numeric option types (argtypes) and the CLI's hint for '-inf'-like values."""

import argparse

import pytest

from zhbert import argtypes


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e400", "abc", "-0.5", "1.5"])
def test_probability_refuses_what_is_not_a_finite_share(text):
    with pytest.raises(argparse.ArgumentTypeError):
        argtypes.probability(text)


@pytest.mark.parametrize("text,value", [("0", 0.0), ("1", 1.0), ("0.25", 0.25), ("1e-3", 0.001)])
def test_probability_takes_a_share(text, value):
    assert argtypes.probability(text) == value


def test_open_bounds_refuse_the_bound_itself():
    with pytest.raises(argparse.ArgumentTypeError, match=r"> 0"):
        argtypes.positive("0")
    assert argtypes.positive("1e-9") == 1e-9
    with pytest.raises(argparse.ArgumentTypeError, match=r"\[0, 1\)"):
        argtypes.number(0.0, 1.0, high_open=True)("1")


def test_a_core_count_is_at_most_the_cores(monkeypatch):
    monkeypatch.setattr("zhbert.threads.available_cores", lambda: 2)
    assert argtypes.cores("2") == 2
    for text in ["3", "0", "99999999999999999999"]:
        with pytest.raises(argparse.ArgumentTypeError):
            argtypes.cores(text)


@pytest.mark.parametrize("text,value", [("5", 5), ("1e5", 100_000), ("100_000", 100_000), ("2.0", 2)])
def test_count_reads_whole_numbers_in_any_notation(text, value):
    assert argtypes.count(1)(text) == value


@pytest.mark.parametrize("text", ["-1", "1.5", "nan", "inf", "1e400", "x", "100001", "1e20"])
def test_boot_count_refuses_what_is_no_bootstrap_size(text):
    """--n-boot 1e20 ran without end, -1 was taken (0 is the delta method)."""
    with pytest.raises(argparse.ArgumentTypeError):
        argtypes.boot_count(text)
    assert argtypes.boot_count("0") == 0


def test_an_unbounded_number_says_finite():
    with pytest.raises(argparse.ArgumentTypeError, match="^nan is not a finite number$"):
        argtypes.number()("nan")


def test_seed_range():
    assert argtypes.seed("0") == 0 and argtypes.seed(str(2 ** 32 - 1)) == 2 ** 32 - 1
    for text in ["-1", str(2 ** 32), "1.5"]:
        with pytest.raises(argparse.ArgumentTypeError):
            argtypes.seed(text)


def test_a_value_starting_with_a_dash_gets_a_hint(capsys):
    """`predict RUN --lr -inf` read '-inf' as an option: argparse said only "expected one
    argument", which the user cannot act on."""
    from zhbert.cli import main
    with pytest.raises(SystemExit) as exc:
        main(["predict", "some-run", "--lr", "-inf"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--lr=VALUE" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["analyze", "RUN"], ["sweep", "report", "S"], ["compare", "A", "B"],
                                  ["export", "RUN"], ["train"], ["prepare", "builtin"], ["sweep", "SPACE"]])
def test_an_empty_out_names_no_folder(argv, capsys):
    """`sweep report S --out ''` and `analyze RUN --out ''` wrote to their default folder
    without a word, `export --out ''` named "." as another process's output."""
    from zhbert.cli import main
    with pytest.raises(SystemExit) as exc:
        main(argv + ["--out", ""])
    assert exc.value.code == 2 and "--out: '' names no folder" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["eval", "probe", "fill-mask", "export"])
def test_a_negative_checkpoint_step_is_refused_by_the_parser(command, capsys):
    """--checkpoint -5 looked for a step_-0000005 directory and said it was missing."""
    from zhbert.cli import main
    with pytest.raises(SystemExit) as exc:
        main([command, "RUN", "--checkpoint", "-5", "--out", "x"] if command == "export"
             else [command, "RUN", "--checkpoint", "-5"])
    assert exc.value.code == 2 and "--checkpoint: -5 is not a whole number >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("option,value", [("--tokens-per-step", "1e300"), ("--seconds-per-step", "1e300"),
                                          ("--price-per-hour", "1e300")])
def test_a_plans_speed_and_price_are_bounded(option, value, capsys):
    """`predict RUN --tokens-per-step 1e300` printed a 300-digit token count and "inf USD"."""
    from zhbert.cli import main
    with pytest.raises(SystemExit) as exc:
        main(["predict", "some-run", option, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert option in err and "is not a number in (0," in err and "Traceback" not in err


def test_a_real_speed_and_price_pass():
    assert argtypes.tokens_per_step("4e6") == 4e6 and argtypes.seconds_per_step("0.25") == 0.25
    assert argtypes.price_per_hour("32.77") == 32.77
