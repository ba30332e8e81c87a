import re
import subprocess
import sys

from trained_run import trained_run  # noqa: F401  (session fixture)
from zhbert.cli import main


def test_overview_lists_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "prepare" in out and "data report" in out


def test_unknown_command_exit_2(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_an_unknown_command_is_named_alone_with_the_nearest(capsys):
    """`zhbert plan RUN` said "unknown command 'plan RUN'", the run glued to the name."""
    assert main(["plan", "/tmp/runs/a"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'plan'" in err and "/tmp/runs/a" not in err
    assert main(["data", "reprot", "x"]) == 2
    assert "unknown command 'data reprot' (did you mean 'data report'?)" in capsys.readouterr().err
    assert main(["tarin", "--data", "d"]) == 2
    assert "unknown command 'tarin' (did you mean 'train'?)" in capsys.readouterr().err


def test_a_command_group_lists_its_commands(capsys):
    """`zhbert data --help` said "unknown command 'data --help'"."""
    assert main(["data", "--help"]) == 0
    out = capsys.readouterr().out
    assert "data report" in out and "data text" in out and "fill-mask" not in out
    assert main(["data"]) == 2 and "data report" in capsys.readouterr().err


def test_options_may_sit_between_positionals(trained_run, capsys):
    """`fill-mask RUN --top-k 3 "..."` read the sentence as an unrecognized argument."""
    assert main(["fill-mask", str(trained_run), "--top-k", "2", "北京是中国的[MASK]都。"]) == 0
    assert "[MASK] 1:" in capsys.readouterr().out


def test_console_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "zhbert", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("zhbert ")


def test_a_bad_option_is_one_line_pointing_at_help(capsys):
    import pytest

    for argv, message in ((["train", "--data", "d", "--out", "o", "--stepz", "3"],
                           "unrecognized arguments: --stepz 3"),
                          (["predict", "run", "--target", "abc"], "invalid float value: 'abc'")):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2
        assert err.count("\n") == 1 and message in err, err
        assert err.startswith(f"zhbert {argv[0]}: error: ") and f"(see zhbert {argv[0]} --help)" in err


def test_train_help_lists_the_config_keys_with_values_set_accepts(capsys):
    import pytest

    from zhbert.config import load_config

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    keys = re.findall(r"\b(model|data|train)\.(\w+)=(\S+)", out)
    cfg = load_config("tiny").to_dict()
    assert {(s, k) for s, k, _ in keys} == {(s, k) for s, v in cfg.items() if isinstance(v, dict)
                                             for k in v}
    # every value as printed goes back through --set unchanged
    assert load_config("tiny", [f"{s}.{k}={v}" for s, k, v in keys]) == load_config("tiny")


def test_a_positional_after_double_dash_may_start_with_a_dash(tmp_path, capsys):
    """Intermixed parsing dropped a positional after "--" (`zhbert status -- -R`)."""
    run = tmp_path / "-R"
    run.mkdir()
    (run / "history.jsonl").write_text("")
    import os
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["status", "--", "-R"]) == 0
    finally:
        os.chdir(cwd)
    assert "-R" in capsys.readouterr().out
