"""The sweep's search space and its bad inputs (exit 2, the line and the fix, no trial)."""

from pathlib import Path

import pytest

from zhbert.cli import main as cli_main
from zhbert.config import load_config
from zhbert.errors import UserError
from zhbert.sweep.space import parse_space

ROOT = Path(__file__).resolve().parent.parent


def _space(tmp_path, text: str) -> Path:
    p = tmp_path / "space.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_the_shipped_example_parses_into_optuna_distributions():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    space = parse_space(ROOT / "examples" / "sweep_space.toml")
    d = space.distributions()
    assert d["train.lr"] == FloatDistribution(5e-4, 3e-3, log=True)
    assert d["train.warmup_steps"] == IntDistribution(0, 200, step=20)
    assert d["train.batch_size"] == CategoricalDistribution([32, 64])
    assert d["data.mask_prob"] == FloatDistribution(0.15, 0.40)
    assert set(d) == {"train.lr", "train.warmup_steps", "train.batch_size", "data.mask_prob",
                      "data.warmup_len_fraction", "model.hidden_dropout"}


def test_fixed_values_and_sampled_ones_become_set_overrides_train_accepts(tmp_path):
    space = parse_space(_space(tmp_path, "[train]\nlog_every = 5\n[train.lr]\nlow = 1e-4\nhigh = 1e-3\n"
                                         "[data.whole_word]\nchoices = [true, false]\n"))
    assert space.fixed == {"train.log_every": 5}
    items = space.overrides({"train.lr": 0.000123456789, "data.whole_word": True})
    assert items == ["train.log_every=5", "train.lr=0.000123456789", "data.whole_word=true"]
    cfg = load_config("tiny", items)
    assert cfg.train.lr == 0.000123456789 and cfg.data.whole_word is True and cfg.train.log_every == 5


def test_int_keys_become_int_ranges_and_the_hash_follows_the_space(tmp_path):
    a = parse_space(_space(tmp_path, "[train.warmup_steps]\nlow = 0\nhigh = 100\n"))
    assert a.params["train.warmup_steps"].kind == "int"
    b = parse_space(_space(tmp_path, "[train.warmup_steps]\nlow = 0\nhigh = 120\n"))
    assert a.hash() != b.hash()


BAD = [
    ("[train.lrr]\nlow = 1e-4\nhigh = 1e-3\n", "line 1", "train.lrr: unknown key"),
    ("[train]\nsteps = 10\n\n[train.lr]\nlow = 1e-3\nhigh = 1e-3\n", "line 4", "empty range"),
    ("[train.lr]\nlow = 1e-2\nhigh = 1e-3\n", "line 1", "swap them"),
    ("[train.batch_size]\nchoices = [32]\n", "line 1", "at least two different choices"),
    ("[train.lr\nlow = 1\n", "not valid TOML", "line 1"),
    ("[data.mask_prob]\nlow = 0.1\nhigh = 1.5\n", "line 1", "data.mask_prob = 1.5: must be in (0, 1)"),
    ("[train.lr]\nlow = 0\nhigh = 1e-3\nlog = true\n", "line 1", "log = true needs low > 0"),
    ("[train.warmup_steps]\nlow = 0.5\nhigh = 10\n", "line 1", "whole numbers"),
    ("[train]\nsteps = 10\n", "searches nothing", "choices"),
    ("[optim.lr]\nlow = 1\nhigh = 2\n", "line 1", "not a config section"),
    # a quoted "false" was bool("false"): a log range; a quoted step crashed on ">"
    ("[train.lr]\nlow = 1e-4\nhigh = 1e-3\nlog = \"false\"\n", "line 1", "log must be true or false"),
    ("[train.warmup_steps]\nlow = 0\nhigh = 10\nstep = \"x\"\n", "line 1", "step must be a number"),
]


@pytest.mark.parametrize("text,where,fix", BAD)
def test_bad_spaces_are_one_line_errors_with_the_line_and_the_fix(tmp_path, text, where, fix):
    with pytest.raises(UserError) as e:
        parse_space(_space(tmp_path, text))
    msg = str(e.value)
    assert where in msg and fix in msg and "\n" not in msg


@pytest.mark.parametrize("text,where,fix", BAD[:5])
def test_the_cli_exits_2_before_any_trial(tmp_path, synthetic_data, capsys, text, where, fix):
    out = tmp_path / "sweep"
    code = cli_main(["sweep", str(_space(tmp_path, text)), "--data", str(synthetic_data),
                     "--out", str(out), "--trials", "1", "--steps", "4"])
    err = capsys.readouterr().err
    assert code == 2 and fix in err and err.count("\n") == 1
    assert not (out / "trials").exists()


def test_a_space_that_searches_steps_is_refused(tmp_path, synthetic_data, capsys):
    space = _space(tmp_path, "[train.steps]\nlow = 10\nhigh = 20\n")
    code = cli_main(["sweep", str(space), "--data", str(synthetic_data), "--out", str(tmp_path / "s")])
    assert code == 2 and "--steps" in capsys.readouterr().err


def test_an_unreachable_storage_url_is_one_clear_line(tmp_path, synthetic_data, capsys):
    space = _space(tmp_path, "[train.lr]\nlow = 1e-4\nhigh = 1e-3\n")
    url = "sqlite:////nonexistent-dir/deeper/sweep.db"
    code = cli_main(["sweep", str(space), "--data", str(synthetic_data), "--out", str(tmp_path / "s"),
                     "--storage", url])
    err = capsys.readouterr().err
    assert code == 2 and "cannot open the sweep storage sqlite:////nonexistent-dir" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_every_problem_of_a_space_file_is_told_at_once_with_the_key_once_and_a_hint(
        tmp_path, synthetic_data, capsys):
    space = _space(tmp_path, "[train.lrr]\nlow = 1e-4\nhigh = 1e-3\n\n[data.mask_prob]\nlow = 0.15\nhigh = 1.40\n"
                             "\n[trian]\nseed = 1\n")
    with pytest.raises(UserError) as e:
        parse_space(space)
    msg = str(e.value)
    assert "3 problems" in msg and msg.count("\n  - ") == 3
    assert "line 1: train.lrr: unknown key" in msg and msg.count("train.lrr") == 1
    assert "did you mean train.lr?" in msg
    assert "line 5: data.mask_prob = 1.4: must be in (0, 1)" in msg
    assert "line 9: [trian] is not a config section" in msg and "did you mean train?" in msg
    code = cli_main(["sweep", str(space), "--data", str(synthetic_data), "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and "did you mean train.lr?" in err and "must be in (0, 1)" in err
    assert "Traceback" not in err and not (tmp_path / "s").exists()


def test_a_key_far_from_every_known_one_gets_no_hint(tmp_path):
    with pytest.raises(UserError) as e:
        parse_space(_space(tmp_path, "[train.foo]\nlow = 1\nhigh = 2\n"))
    assert "train.foo: unknown key" in str(e.value) and "did you mean" not in str(e.value)


# values a trial can reach that the old check let through: each end of a range passed, so
# the sweep started and spent its trials (Optuna searched only `low`, or the trainer
# refused every trial)
UNREACHABLE = [
    ("[train.lr]\nlow = 1e-4\nhigh = 1e-3\nstep = 0.5\n", "line 1", "train.lr: step (0.5) is larger than the range"),
    ("[train.warmup_steps]\nlow = 0\nhigh = 10\nstep = 20\n", "line 1", "every trial would take low = 0"),
    ("[train.warmup_steps]\nlow = 0\nhigh = 10\nstep = 3\n", "line 1", "set high = 9"),
    ("[model.num_heads]\nlow = 2\nhigh = 8\n", "line 1",
     "model.num_heads: 3, 5, 6, 7 of the values trials would take are refused: "
     "model.hidden_size must be a positive multiple of model.num_heads; search only the others: "
     "choices = [2, 4, 8]"),
    ("[model]\nhidden_size = 48\n[model.num_heads]\nchoices = [2, 4, 5]\n", "line 3", "model.num_heads = 5"),
    ("[model.num_heads]\nchoices = [2, 8]\n[model.hidden_size]\nchoices = [64, 36]\n", "refused together",
     "model.num_heads = 8, model.hidden_size = 36"),
    ("[train.batch_size]\nchoices = [64, \"64\"]\n", "line 1", "choices repeat 64"),
    ("[train.batch_size]\nchoices = [64, 64, 32]\n", "line 1", "choices repeat 64"),
    ("[train]\nbatch_size = \"lots\"\n[train.lr]\nlow = 1e-4\nhigh = 1e-3\n", "line 2",
     "train.batch_size = 'lots': 'lots' is not a valid int"),
]


@pytest.mark.parametrize("text,where,fix", UNREACHABLE)
def test_every_value_a_trial_can_reach_is_checked_before_any_trial(
        tmp_path, synthetic_data, capsys, text, where, fix):
    path = _space(tmp_path, text)
    with pytest.raises(UserError) as e:
        parse_space(path)
    assert f"{path}: " in str(e.value) and where in str(e.value) and fix in str(e.value)
    out = tmp_path / "sweep"
    code = cli_main(["sweep", str(path), "--data", str(synthetic_data), "--out", str(out),
                     "--trials", "1", "--steps", "4"])
    err = capsys.readouterr().err
    assert code == 2 and fix in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (out / "trials").exists()


def test_a_grid_that_fits_its_range_and_valid_values_between_the_ends_pass(tmp_path):
    space = parse_space(_space(tmp_path, "[train.lr]\nlow = 0.1\nhigh = 0.3\nstep = 0.1\n"
                                         "[model.num_heads]\nchoices = [2, 4, 8]\n"
                                         "[train.warmup_steps]\nlow = 0\nhigh = 200\nstep = 20\n"))
    assert space.params["train.lr"].step == 0.1 and space.params["train.warmup_steps"].high == 200


def test_keys_searched_together_are_checked_together_not_against_the_base(tmp_path):
    """hidden_size and num_heads both searched: every combination is valid (48 and 96 with
    3 and 6 heads), but each head count was checked against the base's hidden_size (256)
    and refused (a review)."""
    space = parse_space(_space(tmp_path, "[model.hidden_size]\nchoices = [48, 96]\n"
                                         "[model.num_heads]\nchoices = [3, 6]\n"))
    assert space.params["model.num_heads"].choices == (3, 6)
    with pytest.raises(UserError, match=r"refused together \(model.hidden_size = 64, model.num_heads = 3\)"):
        parse_space(_space(tmp_path, "[model.hidden_size]\nchoices = [48, 64]\n"
                                     "[model.num_heads]\nchoices = [3, 4]\n"))
