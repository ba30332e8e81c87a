"""The benchmarks' options and ends, checked without running a benchmark: a bad number, path
or setting is one line ``benchmarks.NAME: error: ...`` and exit 2 (never a traceback or an
empty table), a data folder that holds something else is refused, not filled."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the benchmarks package

from benchmarks import common  # noqa: E402


@pytest.fixture
def fake_data(tmp_path):
    """A folder with a manifest.json: taken as prepared, so nothing is prepared into it."""
    d = tmp_path / "fake-data"
    d.mkdir()
    (d / "manifest.json").write_text('{"format": "zhbert-data"}')  # as datadir.FORMAT marks one
    return d


@pytest.fixture
def not_data(tmp_path):
    d = tmp_path / "holds-something"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    return d


BAD = [
    ("train_throughput", ["--steps", "0"]), ("train_throughput", ["--steps", "-1"]),
    ("train_throughput", ["--rounds", "0"]), ("train_throughput", ["--threads", "0"]),
    ("inference_throughput", ["--batches", "0"]), ("inference_throughput", ["--rounds", "0"]),
    ("inference_throughput", ["--agreement", "/no/such/run"]),
    ("accuracy_top1", ["--repeats", "0"]), ("cross_entropy", ["--repeats", "0"]),
    ("attention_paths", ["--reps", "0"]), ("anomaly_calibration", ["--seeds", "0"]),
    ("monitor_poll", ["--polls", "0"]), ("profile_step", ["--steps", "0"]),
    ("prepare_throughput", ["--workers", "two"]), ("prepare_throughput", ["--dump-mb", "-5"]),
    ("prepare_throughput", ["--source", "/no/such/dump.xml.bz2"]),
    ("prepare_throughput", ["--no-builtin", "--dump-mb", "0"]),
    ("recipe_ablation", ["--until", "0"]), ("recipe_ablation", ["--variant", "bad"]),
    ("recipe_step", ["--steps", "0"]),
    ("time_to_accuracy", ["--budget-minutes", "0"]), ("time_to_accuracy", ["--targets", "5%,8%"]),
    ("time_to_accuracy", ["--targets", "5,8"]),
    ("sweep_benchmark", ["--budget-minutes", "0"]), ("sweep_benchmark", ["--steps", "0"]),
    ("shared_machine", ["--seconds", "0"]), ("shared_machine", ["--warm", "0"]),
    ("shared_machine", ["--rounds", "0"]), ("shared_machine", ["--scenarios", "new-x"]),
    ("gpu_check", ["--steps", "0"]),
]


@pytest.fixture
def no_measuring(monkeypatch):
    """Whatever would measure, prepare or train raises at once: a refusal must come before."""
    from benchmarks import gpu_check, time_to_accuracy, train_throughput

    def measured(*a, **k):
        raise AssertionError("went on to measure")
    for target, name in ((common, "machine"), (common, "peaks"), (time_to_accuracy, "prepare_builtin"),
                         (train_throughput, "build"), (gpu_check, "make_data"), (subprocess, "run")):
        monkeypatch.setattr(target, name, measured)


def _refused(name: str, argv: list[str], capsys) -> str:
    module = importlib.import_module(f"benchmarks.{name}")
    with pytest.raises(SystemExit) as exc:
        module.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith(f"benchmarks.{name}: error: "), err
    return err[-1]


@pytest.mark.parametrize("name,argv", BAD, ids=[f"{n} {' '.join(a)}" for n, a in BAD])
def test_a_bad_option_is_one_line_and_exit_2(name, argv, capsys, monkeypatch, tmp_path, no_measuring):
    monkeypatch.setattr(common, "OUT", tmp_path / "out")
    _refused(name, argv, capsys)
    assert not (tmp_path / "out").exists()  # nothing measured, no JSON


@pytest.mark.parametrize("name,argv,typo", [
    ("recipe_step", ["--set", "train.stepz=3"], "stepz"),
    ("recipe_ablation", ["--variant", "x:train.stepz=3"], "stepz"),
    ("time_to_accuracy", ["--set", "train.stepz=3"], "stepz"),
    ("sweep_benchmark", ["--fixed", "model.num_layer=2"], "num_layer"),
])
def test_a_setting_typo_is_one_line_and_exit_2(name, argv, typo, capsys, fake_data, no_measuring):
    assert typo in _refused(name, [*argv, "--data", str(fake_data)], capsys)


def test_the_wrapper_turns_user_errors_and_failed_commands_into_one_line(capsys):
    from zhbert.errors import UserError

    @common.entry("demo")
    def fails(exc):
        raise exc

    for exc in (UserError("bad key"), common.BenchError("no GPU"),
                subprocess.CalledProcessError(3, ["zhbert", "prepare"], stderr="x\nzhbert: error: full\n")):
        with pytest.raises(SystemExit) as got:
            fails(exc)
        assert got.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("benchmarks.demo: error: ")
    assert "exited 3: zhbert: error: full" in err[0]


# ----------------------------------------------------------------------------- data folders

@pytest.mark.parametrize("name", ["recipe_step", "recipe_ablation", "sweep_benchmark", "time_to_accuracy",
                                  "shared_machine"])
def test_a_folder_that_is_not_a_data_directory_is_refused(name, not_data, capsys):
    line = _refused(name, ["--data", str(not_data)], capsys)
    assert "manifest.json" in line
    assert sorted(p.name for p in not_data.iterdir()) == ["notes.txt"]  # nothing added


@pytest.mark.parametrize("name", ["recipe_step", "recipe_ablation", "sweep_benchmark", "time_to_accuracy",
                                  "shared_machine"])
def test_every_data_help_says_it_is_prepared_if_missing(name, capsys):
    module = importlib.import_module(f"benchmarks.{name}")
    with pytest.raises(SystemExit):
        module.main(["--help"])
    assert common.DATA_HELP in " ".join(capsys.readouterr().out.split())


def test_prepare_builtin_refuses_a_foreign_folder(not_data):
    from benchmarks import time_to_accuracy as tta
    with pytest.raises(common.BenchError, match="manifest.json"):
        tta.prepare_builtin(not_data)


# ----------------------------------------------------------------------------- the ratio under load

def test_both_ratios_and_a_warning_when_the_load_moved_the_steps(capsys):
    from benchmarks import train_throughput as tt
    from zhbert.model import preset

    args = SimpleNamespace(batch_size=32, config="tiny", rounds=3, steps=1, compile=False)
    result = {"step_s": {"zhbert": [0.1, 0.1, 1.0], "reference": [0.3, 0.3, 0.31]},
              "first_step_s": {"zhbert": 0.2, "reference": 0.5}}
    out = tt.report(args, preset("tiny", 10_000), "fp32", result, common.machine(), {"fp32": 900.0}, {})
    text = capsys.readouterr().out
    assert out["ratio"] == pytest.approx(3.0)
    assert out["mean_ratio"] == pytest.approx((0.91 / 3) / 0.4)
    assert "warning: the machine's load moved the steps" in text
    assert f"mean-based ratio: {out['mean_ratio']:.2f}" in text
    steady = {"step_s": {"zhbert": [0.1, 0.1, 0.1], "reference": [0.3, 0.3, 0.3]},
              "first_step_s": result["first_step_s"]}
    out = tt.report(args, preset("tiny", 10_000), "fp32", steady, common.machine(), {"fp32": 900.0}, {})
    assert "warning" not in capsys.readouterr().out and out["mean_ratio"] == pytest.approx(3.0)


# ----------------------------------------------------------------------------- nits

def test_race_sides_says_it_is_a_library():
    done = subprocess.run([sys.executable, "-m", "benchmarks.race_sides"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "not a benchmark" in done.stderr


def test_time_to_accuracy_ratios_are_numbers():
    from benchmarks import time_to_accuracy as tta

    def side(points, train_s):
        return SimpleNamespace(curve=[{"train_s": s, "acc": a} for s, a in points], train_s=train_s)
    sides = {"zhbert": side([(6, 0.3)], 6), "reference": side([(12, 0.3)], 20)}
    assert tta.ratio_value(sides, 0.25) == (pytest.approx(2.0), False)
    sides["reference"] = side([(12, 0.1)], 20)
    assert tta.ratio_value(sides, 0.25) == (pytest.approx(20 / 6), True)
    sides["zhbert"] = side([(6, 0.1)], 6)
    assert tta.ratio_value(sides, 0.25) == (None, False)


def _prepare_result(source, label, workers, tmp, language):
    keys = ("input_mb", "seconds", "mb_per_s", "mb_per_s_per_worker", "pages_per_s", "cpu_use",
            "cpu_main_s", "cpu_workers_s", "mb_per_cpu_s", "clean_s", "count_s", "encode_s",
            "peak_rss_mb", "peak_rss_total_mb", "load_before")
    return {"source": label, "workers": workers, "pages": 10, "worker_peak_rss_mb": None,
            **{k: 1.0 for k in keys}}


def test_prepare_throughput_prints_its_table_once(tmp_path, monkeypatch, capsys):
    from benchmarks import prepare_throughput as pt
    monkeypatch.setattr(common, "OUT", tmp_path / "out")
    monkeypatch.setattr(pt, "run_prepare", _prepare_result)
    source = tmp_path / "dump.xml"
    source.write_text("<mediawiki/>")
    assert pt.main(["--no-builtin", "--dump-mb", "0", "--source", str(source), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("source ") for line in out.splitlines()) == 1, out


def test_monitor_poll_prints_the_machine_and_writes_json(tmp_path, monkeypatch, capsys):
    from benchmarks import monitor_poll
    monkeypatch.setattr(common, "OUT", tmp_path / "out")
    assert monitor_poll.main(["--records", "20", "--polls", "1"]) == 0
    out = capsys.readouterr().out
    assert common.machine_line(common.machine()).split(" · load")[0] in out
    written = json.loads(next((tmp_path / "out").glob("monitor_poll-*.json")).read_text())
    assert written["args"]["polls"] == 1 and written["ms_per_poll"] > 0 and "machine" in written


def test_sweep_benchmark_stamps_its_json_and_prints_the_path(tmp_path, monkeypatch, capsys):
    from benchmarks import sweep_benchmark as sb
    monkeypatch.setattr(common, "OUT", tmp_path / "out")
    monkeypatch.setattr(sb, "measure_preset", lambda run: {"eval_mlm_acc": 0.1, "wall_s": 60.0, "steps": 10})
    sweep = {"trials": 2, "states": "2 complete", "steps_run": 20, "wall_s": 6.0, "best": 0.1}
    monkeypatch.setattr(sb, "measure_sweep", lambda out: {**sweep, "pruner": out.name})
    assert sb.main(["--summarize", "--out", str(tmp_path / "sweep")]) == 0
    written = list((tmp_path / "out").glob("sweep_benchmark-*.json"))
    assert len(written) == 1 and f"wrote {written[0]}" in capsys.readouterr().out


def test_inference_batches_are_recorded_as_run():
    from benchmarks import inference_throughput as it
    assert it.parse_args([]).batches == 4 and it.parse_args(["--quick"]).batches == 2


# ----------------------------------------------------------------------------- omp_wait_policy.sh

def _omp(*args, env=None, tmp=None):
    full = {**os.environ, **(env or {})}
    if tmp:
        full["TMPDIR"] = str(tmp)
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "omp_wait_policy.sh"), *args], cwd=ROOT,
                          capture_output=True, text=True, env=full, timeout=60)


def test_omp_script_usage_and_bad_data(not_data):
    assert _omp().returncode == 2 and "usage:" in _omp().stderr
    helped = _omp("--help")
    assert helped.returncode == 0 and "usage:" in helped.stdout
    bad = _omp(str(not_data))
    assert bad.returncode == 2 and "manifest.json" in bad.stderr


def test_omp_script_shows_a_failed_training_and_cleans_up(fake_data, tmp_path):
    stub = tmp_path / "zhbert-stub"
    stub.write_text("#!/bin/bash\necho 'zhbert: error: the reason it failed' >&2\nexit 3\n")
    stub.chmod(0o755)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    done = _omp(str(fake_data), env={"Z": str(stub)}, tmp=scratch)
    assert done.returncode == 3 and "the reason it failed" in done.stderr
    assert list(scratch.iterdir()) == []  # the trap removed its mktemp folder


def test_a_bad_option_is_one_line_without_the_usage_block(capsys):
    """argparse printed its usage block (3-9 lines) before the error (a re-test)."""
    from zhbert import argtypes
    p = common.Parser("x", None)
    p.add_argument("--trials", type=argtypes.count(1))
    with pytest.raises(SystemExit) as stop:
        p.parse_args(["--trials", "0"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and err.startswith("benchmarks.x: error: ")


def test_train_throughputs_padded_batches_keep_the_contract():
    """--real-share pads rows as packing leaves them on real data: the masked slots, [SEP]s
    and token types stay inside each row's real tokens, and about that share is real."""
    from benchmarks.train_throughput import make_batch, parse_args
    b = make_batch(256, 0, real_share=0.87)
    real = b["attention_mask"]
    assert abs(real.float().mean().item() - 0.87) < 0.03
    assert bool(real.gather(1, b["mlm_positions"]).all()) and bool((b["input_ids"][~real] == 0).all())
    assert bool((b["token_type_ids"][~real] == 0).all()) and bool((b["labels"][~real] == -100).all())
    assert bool(make_batch(8, 0)["attention_mask"].all())
    assert parse_args(["--real-share", "0.87"]).real_share == 0.87
    with pytest.raises(SystemExit):
        parse_args(["--real-share", "0.5"])
