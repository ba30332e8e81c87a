"""A sweep whose trials can draw an lr warm-up of --steps or more: their lr never left it
and the trials ended alike, the only word inside each trial's train.log."""

from test_sweep import SPACE, _args, _space
from zhbert.sweep import command

RANGE = SPACE.replace("warmup_steps = 2\n", "") + "[train.warmup_steps]\nlow = 0\nhigh = 20\nstep = 4\n"


def _start(tmp_path, data, text, name, **kw):
    space = tmp_path / f"{name}.toml"
    space.write_text(text)
    return command.prepare(_args(space, data, tmp_path / name, **{"trials": 1, **kw}))


def test_a_warmup_range_reaching_the_steps_is_warned_once_at_the_start(tmp_path, synthetic_data, capsys):
    _, spec = _start(tmp_path, synthetic_data, RANGE, "s", steps=8)
    err = capsys.readouterr().err
    assert err.count("warning: train.warmup_steps") == 1 and spec.steps == 8  # it still starts
    assert ("train.warmup_steps (0 to 20) reaches 20 >= --steps 8: trials drawing 8 or more never "
            "leave the lr warm-up; lower its high below 8 or raise --steps") in err
    _start(tmp_path, synthetic_data, RANGE, "long", steps=40)  # every draw leaves it: no word
    assert "warm-up" not in capsys.readouterr().err


def test_a_fixed_warmup_at_or_past_the_steps_is_warned(tmp_path, synthetic_data, capsys):
    text = SPACE.replace("warmup_steps = 2\n", "warmup_steps = 8\n")
    _start(tmp_path, synthetic_data, text, "s", steps=8)
    assert ("train.warmup_steps = 8 (the space's) >= --steps 8: all trials never leave the lr "
            "warm-up; lower it or raise --steps") in capsys.readouterr().err
    # not in the space: the base config's (tiny's 100) against steps the space fixes
    text = SPACE.replace("warmup_steps = 2\n", "steps = 50\n")
    _start(tmp_path, synthetic_data, text, "base")
    assert "train.warmup_steps = 100 (the base config's) >= train.steps 50" in capsys.readouterr().err
    _start(tmp_path, synthetic_data, SPACE, "fine", steps=8)
    assert "warm-up" not in capsys.readouterr().err


def test_a_warmup_choice_reaching_the_steps_is_warned(tmp_path, synthetic_data, capsys):
    text = SPACE.replace("warmup_steps = 2\n", "") + "[train.warmup_steps]\nchoices = [2, 8, 16]\n"
    _start(tmp_path, synthetic_data, text, "s", steps=8)
    assert "train.warmup_steps (choices [2, 8, 16]) reaches 16 >= --steps 8" in capsys.readouterr().err
