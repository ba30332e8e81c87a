"""A resume given a start-only option (--config, --steps, --objective, --sampler-seed):
its sweep's own value was refused like another ("--steps: fixed when the sweep started")."""

import json

from test_sweep import _args, _space
from zhbert.cli import main as cli_main
from zhbert.sweep import command


def _new(tmp_path, data, **kw):
    return command.prepare(_args(_space(tmp_path), data, tmp_path / "s", **{"trials": 1, "steps": 8, **kw}))


def test_a_resume_repeating_the_sweeps_own_start_options_is_accepted(tmp_path, synthetic_data):
    sweep_dir, spec = _new(tmp_path, synthetic_data)
    same = {"steps": 8, "objective": "acc", "config": "tiny", "sampler_seed": 0}
    args = _args(sweep_dir, synthetic_data, tmp_path / "unused", **same)
    args.out = None
    _, resumed = command.prepare(args)
    assert resumed.identity() == spec.identity() and resumed.steps == 8


def test_a_resume_with_another_value_names_both(tmp_path, synthetic_data, capsys):
    sweep_dir, _ = _new(tmp_path, synthetic_data)
    assert cli_main(["sweep", str(sweep_dir), "--steps", "80", "--objective", "acc"]) == 2
    err = capsys.readouterr().err
    assert "--steps 80: the sweep started with 8 (sweep.json)" in err and "--objective" not in err
    assert f"resume {sweep_dir} without it" in err
    assert cli_main(["sweep", str(sweep_dir), "--objective", "loss", "--sampler-seed", "3"]) == 2
    err = capsys.readouterr().err
    assert "--objective loss: the sweep started with acc; --sampler-seed 3: the sweep started with 0" in err
    assert json.loads((sweep_dir / "sweep.json").read_text())["objective"] == "acc"


def test_a_toml_base_config_is_compared_by_its_text(tmp_path, synthetic_data, capsys):
    base = tmp_path / "base_in.toml"
    base.write_text("[train]\nlr = 0.002\n")
    sweep_dir, _ = _new(tmp_path, synthetic_data, config=base)
    args = _args(sweep_dir, synthetic_data, tmp_path / "unused", config=base)
    args.out = None
    command.prepare(args)  # the same file: accepted
    command.prepare(_args(sweep_dir, synthetic_data, tmp_path / "u", config=sweep_dir / "base.toml"))
    base.write_text("[train]\nlr = 0.003\n")  # edited since: another base
    assert cli_main(["sweep", str(sweep_dir), "--config", str(base)]) == 2
    err = capsys.readouterr().err
    assert f"--config {base}: the sweep started with another base config, copied to " \
           f"{sweep_dir / 'base.toml'}" in err
    assert cli_main(["sweep", str(sweep_dir), "--config", "seed"]) == 2
    assert "--config seed: the sweep started with another base config" in capsys.readouterr().err
