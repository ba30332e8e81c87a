"""A sweep space's float step grid and a space near its 4,096-combination limit (each test
fails on the code before it, except the count, a guard for the faster check)."""

import math

import optuna

from zhbert.sweep.space import MAX_COMBOS, parse_space

GRID = """
[data.mask_prob]
low = 0.1
high = 0.9
step = 0.1
[data.short_seq_prob]
low = 0.05
high = 0.95
step = 0.1
"""


def _drawn(space, n: int = 200) -> list[dict]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask(space.distributions())
        out.append(dict(trial.params))
        study.tell(trial, 0.0)
    return out


def test_a_float_step_grids_values_reach_the_trial_as_written(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text(GRID, encoding="utf-8")
    space = parse_space(path)
    drawn = _drawn(space)
    # Optuna's own: low + k * step, e.g. 0.30000000000000004 (the fault, and why the space tidies)
    assert any(len(repr(v)) > 5 for params in drawn for v in params.values())
    items = {item for params in drawn for item in space.overrides(params)}
    mask = sorted(float(i.split("=")[1]) for i in items if i.startswith("data.mask_prob="))
    short = sorted(float(i.split("=")[1]) for i in items if i.startswith("data.short_seq_prob="))
    assert [f"{v:g}" for v in mask] == [repr(v) for v in mask]  # as written: 0.3, not 0.30000000000000004
    assert set(mask) <= {round(0.1 * k, 1) for k in range(1, 10)} and len(mask) >= 8
    assert set(short) <= {round(0.05 + 0.1 * k, 2) for k in range(10)} and len(short) >= 8
    assert all(len(repr(v)) <= 4 for v in short)


def test_an_int_range_and_a_float_range_without_step_are_handed_out_as_drawn(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text("[train.lr]\nlow = 1e-4\nhigh = 3e-3\nlog = true\n"
                    "[train.warmup_steps]\nlow = 0\nhigh = 200\nstep = 20\n", encoding="utf-8")
    space = parse_space(path)
    for params in _drawn(space, 20):
        lr = params["train.lr"]
        assert space.overrides(params) == [f"train.lr={lr!r}",
                                           f"train.warmup_steps={params['train.warmup_steps']}"]


def _big_space(tmp_path, values: int = 16):
    """Three params of ``values`` values each (16^3 = 4,096: the limit)."""
    text = "".join(f"[{key}]\nchoices = [{', '.join(str(v) for v in range(lo, lo + values))}]\n"
                   for key, lo in (("train.warmup_steps", 0), ("train.seed", 1),
                                   ("train.keep_last", 1)))
    path = tmp_path / "space.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_space_at_the_combination_limit_parses_with_every_value_kept(tmp_path):
    path = _big_space(tmp_path)
    space = parse_space(path)
    sizes = [len(p.choices) for p in space.params.values()]
    assert math.prod(sizes) == MAX_COMBOS == 4096


def test_each_combination_is_resolved_once(tmp_path, monkeypatch):
    """Every param's check and the check together resolved the same 4,096 combinations, one
    load_config each: 16,385 calls, 4.5 s on a 2-core AMD EPYC (now 4,097, 0.35 s)."""
    from zhbert.sweep import space as space_module
    calls, real = [], space_module.load_config

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)
    monkeypatch.setattr(space_module, "load_config", counting)
    parse_space(_big_space(tmp_path))
    assert MAX_COMBOS <= len(calls) <= MAX_COMBOS + 8


def test_a_refused_value_in_a_big_space_is_still_named(tmp_path):
    path = _big_space(tmp_path)
    path.write_text(path.read_text().replace("choices = [0, 1,", "choices = [-1, 1,"), encoding="utf-8")
    import pytest

    from zhbert.errors import UserError
    with pytest.raises(UserError, match=r"train.warmup_steps = -1.*must be >= 0"):
        parse_space(path)


def test_a_retry_started_before_the_tidying_resumes_with_its_own_value(tmp_path):
    """Its config (and its checkpoints' config hash) holds the value as drawn: the tidied one
    would have its resume refused as another config."""
    import json

    from zhbert.sweep.worker import _as_started
    path = tmp_path / "space.toml"
    path.write_text(GRID, encoding="utf-8")
    space = parse_space(path)
    drawn = {"data.mask_prob": 0.30000000000000004, "data.short_seq_prob": 0.15000000000000002}
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    assert _as_started(trial_dir, drawn) == set()  # no config: a first attempt
    (trial_dir / "config.json").write_text(json.dumps({"config": {"data": {
        "mask_prob": 0.30000000000000004, "short_seq_prob": 0.15}}}))
    exact = _as_started(trial_dir, drawn)
    assert exact == {"data.mask_prob"}
    assert space.overrides(drawn, exact) == ["data.mask_prob=0.30000000000000004",
                                             "data.short_seq_prob=0.15"]


def test_the_reports_trial_rows_show_the_values_as_the_trials_got_them(tmp_path):
    """`sweep report`'s table showed Optuna's 0.30000000000000004 where the trial trained 0.3."""
    from zhbert.sweep.report import _row
    path = tmp_path / "space.toml"
    path.write_text(GRID, encoding="utf-8")
    space = parse_space(path)
    trial = optuna.trial.create_trial(params={"data.mask_prob": 0.1 * 3, "data.short_seq_prob": 0.05 + 0.1 * 2},
                                      distributions=space.distributions(), value=0.2)
    row = _row(trial, tmp_path, space)
    assert row.params == {"data.mask_prob": 0.3, "data.short_seq_prob": 0.25}
