"""benchmarks.gpu_check, the script prepared for a lent GPU: checked on the CPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package

from benchmarks import gpu_check  # noqa: E402


def _history(path: Path, records: list[dict]) -> Path:
    header = {"type": "header", "machine": "NVIDIA H100 · test", "precision": "bf16",
              "precision_reason": "why", "tokens_per_step": 16384}
    path.write_text("\n".join(json.dumps(r) for r in [header, *records]) + "\n")
    return path


def test_speeds_leave_out_the_first_interval_and_extrapolate_the_seed_study(tmp_path):
    h = _history(tmp_path / "history.jsonl", [
        {"type": "train", "step": 10, "elapsed": 30.0, "tokens": 100_000, "data_wait": 0.5},
        {"type": "train", "step": 20, "elapsed": 31.0, "tokens": 250_000, "data_wait": 0.02},
        {"type": "train", "step": 30, "elapsed": 32.0, "tokens": 400_000, "data_wait": 0.04}])
    r = gpu_check.speeds(h)
    assert r["steps_per_s"] == pytest.approx(10.0)  # 20 steps in 2 s; warm-up's 30 s left out
    assert r["tokens_per_s"] == pytest.approx(163_840)
    assert r["real_tokens_per_s"] == pytest.approx(150_000)
    assert r["data_wait_share"] == pytest.approx(0.03)
    assert r["seed_study_minutes"] == pytest.approx(100_000 / 10 / 60)
    assert "166.7 min" in gpu_check.line(r) and "goal < 30 min: not met" in gpu_check.line(r)
    fast = {**r, "seed_study_minutes": 27.8}  # 60 steps/s: ~1M tokens/s at the seed shape
    assert "goal < 30 min: met" in gpu_check.line(fast)


def test_generated_data_has_the_seed_vocabulary(tmp_path):
    from zhbert.datadir import open_data_dir
    dd = open_data_dir(gpu_check.make_data(tmp_path / "d", tokens=50_000))
    assert len(dd.vocab) == gpu_check.VOCAB and dd.split("train").tokens.max() < gpu_check.VOCAB
    assert dd.split("train").num_documents > 100


@pytest.mark.slow
def test_quick_run_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr("benchmarks.common.OUT", tmp_path / "out")
    assert gpu_check.main(["--quick", "--work", str(tmp_path / "w")]) == 0
    result = json.loads(next((tmp_path / "out").glob("gpu_check-*.json")).read_text())["results"][0]
    assert result["precision"] == "fp32" and result["steps_per_s"] > 0
    assert result["seed_study_minutes"] is None  # a tiny check extrapolates no seed study
    assert result["data_wait_share"] is not None and 0 <= result["data_wait_share"] < 1


def test_quick_line_extrapolates_nothing(tmp_path):
    """--quick times the tiny preset on the CPU to check the script: its line must not read
    as the seed study's time against the 30-minute goal."""
    r = {"precision": "fp32", "tokens_per_s": 900.0, "real_tokens_per_s": 800.0, "steps_per_s": 7.0,
         "data_wait_share": 0.01, "seed_study_minutes": 238.1}
    quick = gpu_check.line(r, quick=True)
    assert "goal" not in quick and "238.1" not in quick and "--quick" in quick
    assert "goal < 30 min: not met" in gpu_check.line(r)


def test_sweep_benchmark_summary_rounds_the_best_accuracies():
    from benchmarks.sweep_benchmark import summary
    sweep = {"trials": 6, "states": "6 complete", "steps_run": 1800, "wall_s": 60.0}
    res = {"machine": "cpu", "fixed": [], "steps": 300,
           "preset": {"steps": 300, "eval_mlm_acc": 0.03, "wall_s": 30.0},
           "none": {**sweep, "pruner": "none", "best": 0.04045977011494253},
           "forecast": {**sweep, "pruner": "forecast", "best": None}}
    text = summary(res)
    assert "best - vs 0.0405 (issue: within 0.01)" in text and "0.040459" not in text


def test_no_gpu_says_so_and_exits_2_before_training(monkeypatch, capsys):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)

    def no_training(*a, **k):
        raise AssertionError("trained without a GPU")
    monkeypatch.setattr(gpu_check, "make_data", no_training)
    monkeypatch.setattr(gpu_check, "train", no_training)
    with pytest.raises(SystemExit) as exc:
        gpu_check.main(["--steps", "6", "--precisions", "bf16"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no CUDA GPU" in err and err.startswith("benchmarks.gpu_check: error:")


def test_default_work_folder_is_removed(tmp_path, monkeypatch):
    import subprocess
    made = tmp_path / "gpu_check-tmp"
    monkeypatch.setattr("tempfile.mkdtemp", lambda prefix="": (made.mkdir(), str(made))[1])
    monkeypatch.setattr("benchmarks.common.OUT", tmp_path / "out")
    monkeypatch.setattr(gpu_check, "make_data", lambda path, tokens: path.mkdir(parents=True) or path)
    monkeypatch.setattr(gpu_check, "train", lambda *a, **k: subprocess.CompletedProcess([], 1, "", "boom"))
    assert gpu_check.main(["--quick"]) == 1
    assert not made.exists()
    kept = tmp_path / "kept"
    assert gpu_check.main(["--quick", "--work", str(kept)]) == 1 and kept.exists()


@pytest.mark.parametrize("bad", [["--steps", "0"], ["--steps", "-1"], ["--precisions", "bf17"]])
def test_bad_options_are_refused(bad, monkeypatch):
    monkeypatch.setattr(gpu_check, "make_data", lambda *a, **k: pytest.fail("ran"))
    with pytest.raises(SystemExit) as exc:
        gpu_check.main(["--quick", *bad])
    assert exc.value.code == 2
