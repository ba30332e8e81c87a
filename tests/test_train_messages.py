"""What `zhbert train` says when a run cannot go on as asked, and seeds of any size."""

from pathlib import Path

from zhbert.cli import main as cli_main
from zhbert.config import load_config
from zhbert.history import iter_records
from zhbert.train import main

from test_train import SMALL


def test_a_resume_onto_small_other_data_names_the_runs_data_first(synthetic_data, tmp_path, capsys):
    """`--resume --data SMALL` was told SMALL gives too few sequences, to use a smaller
    train.batch_size or turn the warm-up off: fixes --resume refuses. The run's own data
    is named now, before the loader looks at the other data (a newcomer's pass)."""
    from synthetic import make_data_dir

    small = make_data_dir(tmp_path / "small", n_docs=(3, 2, 2))
    run = tmp_path / "run"
    sets = sum((["--set", s] for s in SMALL + ["train.steps=2", "train.batch_size=64"]), [])
    assert cli_main(["train", "--data", str(synthetic_data), "--out", str(run), "--no-progress"] + sets) == 0
    capsys.readouterr()
    assert cli_main(["train", "--data", str(small), "--out", str(run), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"pass --data {synthetic_data.resolve()}, the data it was trained on" in err
    assert "fewer than one global batch" not in err


def test_a_seed_past_2_to_the_32_trains(synthetic_data, tmp_path):
    """Each step's dropout seed is (seed x 1,000,003 + step x 7,919 + rank) modulo 2^64: a
    seed of 2^60 overflowed torch.manual_seed at the first step before."""
    cfg = load_config("tiny", SMALL + ["train.steps=2", f"train.seed={2 ** 60}"])
    main(cfg, synthetic_data, tmp_path / "run", progress=False)
    assert [r["step"] for r in iter_records(Path(tmp_path / "run" / "history.jsonl"))
            if r["type"] == "train"][-1] == 2


def test_more_accumulation_than_an_epoch_is_refused_before_training(synthetic_data, tmp_path, capsys):
    """train.grad_accum=1e30 read every micro-batch of a step up front and filled 22 GB
    before the first step (a newcomer's pass); more than an epoch a step is refused, with
    nothing written."""
    run = tmp_path / "run"
    sets = sum((["--set", s] for s in SMALL + ["train.steps=2", "train.grad_accum=100000"]), [])
    assert cli_main(["train", "--data", str(synthetic_data), "--out", str(run), "--no-progress"] + sets) == 2
    assert "train.grad_accum 100,000 asks for more global batches a step than an epoch" in capsys.readouterr().err
    assert not run.exists()


def test_a_model_larger_than_the_machine_is_refused_before_the_run_directory(synthetic_data, tmp_path, capsys):
    """model.hidden_size=1e9 failed in torch's allocator after config.json was written (the
    next plain train there then said "holds a run with other settings"; num_layers=1e9
    allocated layer after layer until the machine ran out); a model whose memory floor
    exceeds the machine is refused with nothing written. (One huge tensor: on a regression
    this fails at once rather than filling the machine.)"""
    run = tmp_path / "run"
    sets = sum((["--set", s] for s in SMALL + ["train.steps=2", "model.hidden_size=1e9"]), [])
    assert cli_main(["train", "--data", str(synthetic_data), "--out", str(run), "--no-progress"] + sets) == 2
    err = capsys.readouterr().err
    assert "this model needs at least" in err and "hidden_size 1,000,000,000" in err
    assert not run.exists()


def test_the_memory_floor_passes_the_presets():
    """The floor must never refuse a real config on a 24 GB machine: the base preset fits."""
    from zhbert.accounting import training_bytes_lower_bound
    from zhbert.run import model_config_from
    cfg = load_config("base")
    need = training_bytes_lower_bound(model_config_from(cfg, 21128), cfg.train.batch_size, cfg.data.max_len)
    assert 1.5 * 2**30 < need < 8 * 2**30  # BERT-base: 110M parameters x 16 bytes, plus activations
    tiny = load_config("tiny")  # the demo's tiny training peaked at 0.60 GB RSS (README)
    assert training_bytes_lower_bound(model_config_from(tiny, 5036), 64, 64) < 0.3 * 2**30


def test_more_threads_than_cores_are_refused(tmp_path, capsys):
    """`train --threads 1000000` asked OpenMP for a million threads."""
    from zhbert.threads import available_cores
    n = available_cores() + 1
    import pytest
    with pytest.raises(SystemExit) as exc:
        cli_main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--threads", str(n)])
    assert exc.value.code == 2
    assert f"--threads: {n} is more than the {n - 1} core" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_more_loader_workers_than_cores_are_refused():
    """data.num_workers=1e6 would start a million worker processes."""
    import pytest
    from zhbert.errors import UserError
    from zhbert.loader import loader_workers
    from zhbert.threads import available_cores
    with pytest.raises(UserError, match="more than the"):
        loader_workers(available_cores() + 1, "cpu")
    assert loader_workers(-1, "cpu") == 0 and loader_workers(1, "cpu") == 1


def test_a_data_manifest_as_config_is_named_as_such(synthetic_data, tmp_path, capsys):
    """`train --config DATA/manifest.json` listed four "unknown section" lines."""
    code = cli_main(["train", "--data", str(synthetic_data), "--out", str(tmp_path / "run"),
                     "--config", str(synthetic_data / "manifest.json")])
    err = capsys.readouterr().err
    assert code == 2 and "a data directory's manifest: pass its directory as --data" in err
    assert "unknown section" not in err and len(err.strip().splitlines()) == 1


def test_a_model_larger_than_the_machine_is_refused_before_a_budget_times_it(synthetic_data, tmp_path, capsys):
    """--minutes builds the model to time its steps before the run directory: the memory
    check must come first (a diff review found it after the budget)."""
    run = tmp_path / "run"
    sets = sum((["--set", s] for s in SMALL + ["model.hidden_size=1e9"]), [])
    assert cli_main(["train", "--data", str(synthetic_data), "--out", str(run), "--no-progress",
                     "--minutes", "1"] + sets) == 2
    assert "this model needs at least" in capsys.readouterr().err and not run.exists()


def test_a_resume_with_another_number_of_processes_is_refused(synthetic_data, tmp_path, capsys):
    """A 2-process run resumed as 1 went on at half the tokens a step (and the reverse at
    twice), saying only "resuming from step 20": the header's world_size is checked now."""
    import json
    import shutil

    run = tmp_path / "run"
    sets = sum((["--set", s] for s in SMALL + ["train.steps=4", "train.checkpoint_every=2"]), [])
    assert cli_main(["train", "--data", str(synthetic_data), "--out", str(run), "--no-progress"] + sets) == 0
    shutil.rmtree(run / "checkpoints" / "step_00000004")  # killed after step 2's checkpoint
    lines = (run / "history.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    assert header["type"] == "header" and header["world_size"] == 1
    (run / "history.jsonl").write_text("\n".join([json.dumps({**header, "world_size": 2})] + lines[1:]) + "\n")
    capsys.readouterr()
    assert cli_main(["train", "--data", str(synthetic_data), "--out", str(run), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "trained its first 2 steps with 2 processes, and this resume runs 1" in err
    assert "torchrun --nproc_per_node 2 -m zhbert train ... --resume" in err
    (run / "history.jsonl").write_text("\n".join(lines) + "\n")  # its own count: resumes
    assert cli_main(["train", "--data", str(synthetic_data), "--out", str(run), "--resume", "--no-progress"]) == 0
