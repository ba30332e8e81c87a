import pytest

from zhbert.config import config_from_dict, load_config
from zhbert.errors import UserError


def test_presets_load_and_seed_matches_the_study():
    for name in ("tiny", "seed", "base"):
        assert load_config(name).preset == name
    s = load_config("seed")
    assert (s.model.hidden_size, s.model.num_layers, s.model.num_heads, s.model.intermediate_size) == (512, 12, 8, 2048)
    assert s.train.batch_size * s.train.grad_accum == 128
    assert (s.train.lr, s.train.warmup_steps, s.train.steps, s.train.checkpoint_every) == (5e-5, 2000, 100000, 2000)


def test_overrides_are_typed():
    c = load_config("tiny", ["train.lr=5e-4", "train.steps=7", "data.whole_word=true", "model.objective=mlm"])
    assert c.train.lr == 5e-4 and c.train.steps == 7 and c.data.whole_word is True
    assert c.model.objective == "mlm"


def test_all_errors_reported_at_once():
    with pytest.raises(UserError) as e:
        load_config("tiny", ["train.lr=-1", "train.steps=abc", "model.objective=xlnet", "train.nope=1", "bad"])
    msg = str(e.value)
    for part in ("train.lr", "train.steps", "model.objective", "train.nope", "'bad'"):
        assert part in msg


def test_toml_file_and_roundtrip(tmp_path):
    p = tmp_path / "my.toml"
    p.write_text('[model]\nhidden_size = 64\nnum_heads = 2\n[train]\nsteps = 3\n')
    c = load_config(str(p))
    assert c.model.hidden_size == 64 and c.preset == "my"
    assert config_from_dict(c.to_dict()) == c
    assert c.hash() == config_from_dict(c.to_dict()).hash()
    # cadence changes do not change the trajectory hash; lr does
    assert load_config(str(p), ["train.eval_every=7"]).hash() == c.hash()
    assert load_config(str(p), ["train.lr=1e-2"]).hash() != c.hash()
    (tmp_path / "bad.toml").write_text("[model\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_config(str(tmp_path / "bad.toml"))


def test_length_warmup_settings_are_checked():
    cfg = load_config("tiny", ["data.max_len=64", "data.warmup_len=32", "data.warmup_len_fraction=0.1"])
    assert (cfg.data.warmup_len, cfg.data.warmup_len_fraction) == (32, 0.1)
    for bad in (["data.warmup_len=24", "data.warmup_len_fraction=0.1"],   # does not divide 64
                ["data.warmup_len=64", "data.warmup_len_fraction=0.1"],   # not shorter
                ["data.warmup_len=32", "data.warmup_len_fraction=0"]):   # no share of the steps
        with pytest.raises(UserError, match="warmup_len"):
            load_config("tiny", ["data.max_len=64", *bad])


def test_hash_of_a_config_without_length_warmup_is_unchanged():
    # runs checkpointed before data.warmup_len existed must still resume: their stored hash
    # (computed by the code of 2026-12-02, commit 65b6c7f) has to match
    assert load_config("seed", []).hash() == "1afb3c4aeb070806"
    assert load_config("seed", ["data.warmup_len_fraction=0.3"]).hash() == "1afb3c4aeb070806"  # off
    on = load_config("seed", ["data.warmup_len=64", "data.warmup_len_fraction=0.1"])
    assert on.hash() != load_config("seed", []).hash()


def test_config_errors_name_the_file_the_line_and_the_closest_key(tmp_path):
    """`train --config typo.toml` said "invalid configuration:" and a list, naming neither the
    file nor the lines (a newcomer's pass); a sweep's space check named both. A missing file
    read as "neither a preset, a TOML file nor a run"."""
    from zhbert.config import ConfigError

    f = tmp_path / "typo.toml"
    f.write_text('[train]\nlrr = 1e-3\nsteps = "abc"\n[modle]\nx = 1\n')
    with pytest.raises(ConfigError) as err:
        load_config(str(f))
    assert str(err.value).startswith(f"invalid configuration in config file {f}:\n  - ")
    assert str(err.value).splitlines()[1:] == [
        "  - [modle]: unknown section; did you mean [model]? (line 4)",
        "  - train.lrr: unknown key; did you mean train.lr? (line 2)",
        "  - train.steps: 'abc' is not a valid int (line 3)"]
    assert err.value.lines == {0: 4, 1: 2, 2: 3}  # apart from the problems (a sweep quotes those)
    f.write_text("[model]\nnum_layers = 2\n\n[train]\nnum_layers = 3\nsteps = 'x'\n")
    with pytest.raises(ConfigError, match=r"train.num_layers: unknown key.* \(line 5\)"):
        load_config(str(f))  # the key of its own table, not [model]'s line 2
    f.write_text("[train]\nsteps = 10\n")
    with pytest.raises(ConfigError) as err:  # the file's value replaced: the --set's error
        load_config(str(f), ["train.steps=x"])
    assert str(err.value) == (f"invalid configuration in config file {f} with --set: "
                              "train.steps: 'x' is not a valid int")
    with pytest.raises(UserError, match="'nothere.toml': no such file; the presets are"):
        load_config("nothere.toml")
    with pytest.raises(UserError, match="did you mean tiny\\?"):
        load_config("tinny")


def test_differences_name_what_changed_with_both_values():
    """Keys a hash leaves out for one side (wsd's decay_fraction, the length warm-up's
    fraction when it is off) are not differences of their own; the values are both sides'."""
    from zhbert.config import load_config as load

    tiny = load("tiny")
    assert load("tiny", ["train.schedule=wsd"]).differences(tiny) == {"train.schedule": ("wsd", "cosine")}
    assert load("tiny", ["data.warmup_len=0"]).differences(tiny) == {"data.warmup_len": (0, 16)}
    assert load("tiny", ["train.schedule=wsd", "train.decay_fraction=0.3"]).differences(tiny) == {
        "train.decay_fraction": (0.3, 0.2), "train.schedule": ("wsd", "cosine")}


@pytest.mark.parametrize("override, words", [
    ("train.seed=-1", "train.seed must be in [0, 2^64)"),  # numpy's SeedSequence: a traceback
    ("train.seed=18446744073709551616", "train.seed must be in [0, 2^64)"),  # torch.manual_seed's
    ("train.weight_decay=inf", "train.weight_decay must be a finite number (got inf)"),  # "diverged"
    ("train.eps=inf", "train.eps must be a finite number (got inf)"),  # trained nothing, exit 0
    ("train.lr=inf", "train.lr must be a finite number (got inf)"),
    ("data.mask_prob=nan", "data.mask_prob must be a finite number (got nan)"),
])
def test_out_of_range_seeds_and_infinite_settings_are_config_errors(override, words):
    """A newcomer's pass: these passed validation and failed later (a traceback, a run that
    "diverged" with advice to lower the lr, or one that silently learned nothing)."""
    from zhbert.config import ConfigError
    with pytest.raises(ConfigError) as err:
        load_config("tiny", [override])
    assert words in str(err.value)
    assert str(err.value).count(override.split("=")[0]) == 1  # nan: not also "must be > 0"


def test_large_seeds_and_no_clipping_stay_valid():
    """Runs made with a seed of 2^32 or more trained (each step's seed is taken modulo 2^64
    now, the same value wherever it fitted), and clip_norm = inf means no clipping, as 0
    does: neither is refused, so such runs can still be resumed."""
    big = load_config("tiny", ["train.seed=10000000000000"])
    assert big.train.seed == 10 ** 13
    assert load_config("tiny", ["train.clip_norm=inf"]).train.clip_norm == float("inf")


@pytest.mark.parametrize("argv", [
    ["prepare", "builtin", "--out", "OUT", "--split-seed", "-3"],
    ["analyze", "RUN", "--seed", "-1"],
    ["predict", "RUN", "--seed", "4294967296"],
    ["probe", "RUN", "--task", "sentiment", "--seed", "-1"],
    ["sweep", "SPACE", "--data", "DATA", "--out", "OUT", "--sampler-seed", "-1"],
    ["sweep", "SPACE", "--data", "DATA", "--out", "OUT", "--sampler-seed", "x"],
])
def test_every_seed_option_refuses_what_numpy_and_optuna_refuse(argv, tmp_path, capsys):
    """`sweep --sampler-seed -1` was Optuna's traceback after the sweep directory was
    written; analyze / predict / probe's bootstrap and prepare's split seeds the same kind
    of traceback. One argparse type (argtypes.seed), exit 2, nothing written."""
    from zhbert.cli import main as cli_main
    out = tmp_path / "out"
    argv = [str(out) if a == "OUT" else a for a in argv]
    with pytest.raises(SystemExit) as exc:
        cli_main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and ("is not in [0, 2^32)" in err or "is not a whole number" in err)
    assert not out.exists()


@pytest.mark.parametrize("text", ["1e400", "1.5e0", "1e30"])
def test_an_int_in_float_notation_must_be_a_whole_int64(text):
    """train.steps=1e400 was an OverflowError traceback and 1.5e0 read as 1 step; 1e5 stays
    100,000 steps."""
    from zhbert.config import ConfigError
    with pytest.raises(ConfigError, match=rf"train.steps: '{text}' is not a valid int"):
        load_config("tiny", [f"train.steps={text}"])
    assert load_config("tiny", ["train.steps=1e5"]).train.steps == 100_000


@pytest.mark.parametrize("argv, words", [
    (["probe", "RUN", "--task", "sentiment", "--lr", "nan"], "--lr: nan is not a number > 0"),
    (["backtest", "--predict", "RUN", "--from", "RUN", "--law", ""], "--law names no law"),
    (["prepare", "builtin", "--out", "OUT", "--limit-docs", "99999999999999999999"], "--limit-docs: 99999999999999999999 is not a whole number in"),
])
def test_option_values_that_were_tracebacks(argv, words, tmp_path, capsys):
    """A bad-input pass: torch's "Invalid learning rate", max() of no law, islice's bound
    (now refused by the option's argparse type, or by the command: exit 2 either way)."""
    from zhbert.cli import main as cli_main
    out = tmp_path / "out"
    try:
        code = cli_main([str(out) if a == "OUT" else a for a in argv])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("eps", ["1", "1e30"])
def test_an_adam_eps_that_swamps_every_gradient_is_refused(eps):
    """train.eps=1e30 trained to 0.0% with exit 0: no update ever moved the weights."""
    from zhbert.config import ConfigError
    with pytest.raises(ConfigError, match=r"eps in \(0, 1\)"):
        load_config("tiny", [f"train.eps={eps}"])


@pytest.mark.parametrize("text", ["42", "null", "true"])
def test_a_config_json_that_is_no_object_is_one_line(text, tmp_path):
    """`--config x.json` holding a bare number was a TypeError after the manifest check."""
    from zhbert.errors import UserError
    f = tmp_path / "x.json"
    f.write_text(text)
    with pytest.raises(UserError, match="is not a zhbert run's config.json"):
        load_config(str(f))


@pytest.mark.parametrize("steps", ["99999999999999999999", "1000000001"])
def test_a_run_longer_than_a_billion_steps_is_refused(steps, tmp_path, capsys):
    """train.steps=99999999999999999999 trained (its length warm-up's 2 x 10^19 steps at
    length 16 never ending) though the README says it is refused; 10^9 still loads."""
    from zhbert.cli import main as cli_main
    from zhbert.config import ConfigError
    with pytest.raises(ConfigError, match=r"train.steps must be in \[1, 1,000,000,000\]"):
        load_config("tiny", [f"train.steps={steps}"])
    assert load_config("tiny", ["train.steps=1e9"]).train.steps == 10 ** 9
    out = tmp_path / "run"
    assert cli_main(["train", "--data", str(tmp_path / "nodata"), "--out", str(out),
                     "--set", f"train.steps={steps}"]) == 2
    assert "train.steps must be in" in capsys.readouterr().err and not out.exists()
