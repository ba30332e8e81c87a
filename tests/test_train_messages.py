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
