import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from zhbert.cli import main as cli_main
from zhbert.config import load_config
from zhbert.history import iter_records
from zhbert.schedule import lr_at
from zhbert.train import main

SMALL = ["model.hidden_size=64", "model.num_layers=2", "model.num_heads=2",
         "model.intermediate_size=128", "data.max_len=64", "data.eval_sequences=64",
         "train.batch_size=8", "train.lr=2e-3", "train.warmup_steps=5", "train.precision=fp32"]
TIMING = {"elapsed", "tokens_per_s", "data_wait"}


def _cfg(*extra):
    return load_config("tiny", SMALL + list(extra))


def _records(run, types=("train", "eval")):
    return [{k: v for k, v in r.items() if k not in TIMING}
            for r in iter_records(Path(run) / "history.jsonl") if r["type"] in types]


def test_lr_schedule_warmup_then_cosine():
    cfg = _cfg("train.steps=100", "train.warmup_steps=10", "train.lr=1.0")
    assert lr_at(5, cfg) == pytest.approx(0.5)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(55, cfg) == pytest.approx(0.5)
    assert lr_at(100, cfg) == pytest.approx(0.0, abs=1e-12)


def test_trains_learns_and_writes_history(synthetic_data, tmp_path):
    cfg = _cfg("train.steps=60", "train.log_every=10", "train.eval_every=20",
               "train.checkpoint_every=20", "train.keep_last=2")
    main(cfg, synthetic_data, tmp_path / "run", progress=False)
    recs = list(iter_records(tmp_path / "run" / "history.jsonl"))
    header, train = recs[0], [r for r in recs if r["type"] == "train"]
    evals = [r for r in recs if r["type"] == "eval"]
    assert header["schema"] == "zhbert-history" and header["precision"] == "fp32"
    assert [r["step"] for r in train] == [10, 20, 30, 40, 50, 60]
    assert [r["step"] for r in evals] == [20, 40, 60]
    assert train[-1]["loss"] < train[0]["loss"] - 0.1
    lo, hi = evals[-1]["eval_mlm_acc_ci95"]
    assert lo < evals[-1]["eval_mlm_acc"] < hi and evals[-1]["eval_masked"] > 100
    # Held-out accuracy is far above chance (1/120) on learnable synthetic data.
    assert evals[-1]["eval_mlm_acc"] > 0.05
    assert train[-1]["tokens"] > train[0]["tokens"] > 0
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts == ["step_00000040", "step_00000060"]
    assert not (tmp_path / "run" / "running.json").exists()


def _train_cmd(data, run, steps, every):
    sets = SMALL + [f"train.steps={steps}", "train.log_every=2", "train.eval_every=4",
                    f"train.checkpoint_every={every}", "train.keep_last=5"]
    cmd = [sys.executable, "-m", "zhbert", "train", "--data", str(data), "--out", str(run),
           "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    return cmd


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _wait_for(path: Path, proc, timeout=120):
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() - t0 < timeout
        time.sleep(0.05)


def test_kill9_and_resume_writes_identical_history(synthetic_data, tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    subprocess.run(_train_cmd(synthetic_data, ref, 24, 6), env=ENV, check=True,
                   capture_output=True)
    proc = subprocess.Popen(_train_cmd(synthetic_data, run, 24, 6), env=ENV,
                            stderr=subprocess.PIPE, text=True)
    _wait_for(run / "checkpoints" / "step_00000012", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    r = subprocess.run(_train_cmd(synthetic_data, run, 24, 6) + ["--resume"], env=ENV,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resuming from step" in r.stderr
    assert _records(run) == _records(ref)


def test_sigterm_checkpoints_and_exits_zero(synthetic_data, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(synthetic_data, run, 100000, 100000), env=ENV,
                            stderr=subprocess.PIPE, text=True)
    _wait_for(run / "history.jsonl", proc)
    while not any(r["type"] == "train" for r in iter_records(run / "history.jsonl")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    events = [r for r in iter_records(run / "history.jsonl") if r["type"] == "event"]
    assert events[-1]["kind"] == "stop"
    assert (run / "checkpoints" / f"step_{events[-1]['step']:08d}" / "meta.json").exists()


def test_refuses_a_run_dir_of_another_config(synthetic_data, tmp_path, capsys):
    args = ["train", "--data", str(synthetic_data), "--out", str(tmp_path / "run"), "--no-progress"]
    sets = sum((["--set", s] for s in SMALL + ["train.steps=2"]), [])
    assert cli_main(args + sets) == 0
    assert cli_main(args + sets + ["--set", "train.lr=1e-4"]) == 2
    err = capsys.readouterr().err   # names what differs, and what --force would do
    assert "other settings (train.lr: 0.002 -> 0.0001)" in err and "delete that run" in err
    assert cli_main(args + sets + ["--set", "train.lr=1e-4", "--resume"]) == 2
    assert "leave out --config and --set" in capsys.readouterr().err
    assert cli_main(args + sets) == 2  # same run, neither --resume nor --force
    assert cli_main(args + ["--data", str(tmp_path / "missing")] + sets) == 2
    (tmp_path / "afile").write_text("x")
    bad = args[:-2] + [str(tmp_path / "afile" / "run"), "--no-progress"]
    assert cli_main(bad + sets) == 2
    assert f"{tmp_path / 'afile'} is a file, not a directory" in capsys.readouterr().err
    # --force starts over: results derived from the old run must not survive
    for name in ("probe.jsonl", "checkpoint_eval.jsonl"):
        (tmp_path / "run" / name).write_text('{"step": 2}\n')
    assert cli_main(args + sets + ["--force"]) == 0
    assert not (tmp_path / "run" / "probe.jsonl").exists()
    assert not (tmp_path / "run" / "checkpoint_eval.jsonl").exists()


def test_refuses_to_write_a_run_into_a_data_directory(synthetic_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    before = sorted(p.name for p in data.iterdir())
    sets = sum((["--set", s] for s in SMALL + ["train.steps=2"]), [])
    for out in (data, tmp_path / "." / "data"):
        assert cli_main(["train", "--data", str(data), "--out", str(out), "--no-progress"] + sets) == 2
        assert "is a data directory" in capsys.readouterr().err
    assert sorted(p.name for p in data.iterdir()) == before


def test_a_config_the_data_cannot_serve_leaves_no_run_behind(tmp_path, capsys):
    """NSP over a split of one document, or a batch larger than the split, fails before
    the run directory is made, so the fixed command can use the same --out without --force."""
    from synthetic import make_data_dir

    data = make_data_dir(tmp_path / "data", n_docs=(1, 1, 1))
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(run), "--no-progress"]
    sets = sum((["--set", s] for s in SMALL + ["train.steps=2", "data.eval_sequences=4",
                                               "data.warmup_len=0"]), [])
    assert cli_main(args + sets) == 2
    assert "at least 2 documents" in capsys.readouterr().err
    assert not run.exists()
    mlm = sets + ["--set", "model.objective=mlm"]
    assert cli_main(args + mlm) == 2  # 8 sequences a batch, fewer in the split
    assert "fewer than one global batch" in capsys.readouterr().err
    assert not run.exists()
    assert cli_main(args + mlm + ["--set", "train.batch_size=2"]) == 0
    assert (run / "history.jsonl").exists()


def test_warns_when_the_warmup_outlasts_the_run(synthetic_data, tmp_path, capsys):
    sets = sum((["--set", s] for s in SMALL + ["train.steps=3"]), [])
    base = ["train", "--data", str(synthetic_data), "--no-progress"]
    assert cli_main(base + ["--out", str(tmp_path / "a")] + sets) == 0  # warm-up 5 >= 3 steps
    err = capsys.readouterr().err
    assert "train.warmup_steps (5) >= train.steps (3)" in err
    # the last line sums the run up: where it got, how fast, the held-out figures, what next
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(rf"zhbert: {re.escape(str(tmp_path / 'a'))} at step 3 of 3: [0-9.]+ min of "
                        r"training, [0-9,]+ real tokens/s; held-out MLM accuracy [0-9.]+%, NSP "
                        r"[0-9.]+% at step 3\. Next: zhbert status .*; zhbert analyze .*", last), last
    assert cli_main(base + ["--out", str(tmp_path / "b")] + sets + ["--set", "train.warmup_steps=1"]) == 0
    assert "warmup_steps" not in capsys.readouterr().err


def test_nonfinite_steps_are_skipped_then_stop(synthetic_data, tmp_path, monkeypatch):
    real = torch.nn.utils.clip_grad_norm_
    calls = {"n": 0}

    def flaky(params, max_norm):
        calls["n"] += 1
        norm = real(params, max_norm)
        return norm * float("nan") if calls["n"] in (3,) or calls["n"] >= 8 else norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", flaky)
    cfg = _cfg("train.steps=20", "train.log_every=2", "train.checkpoint_every=4",
               "train.max_nonfinite=3")
    from zhbert.errors import UserError
    import zhbert.train
    loads = []
    monkeypatch.setattr(zhbert.train, "load_checkpoint", lambda *a, **k: loads.append(a))
    # step 8, skipped, still checkpoints (its weights are step 7's, its batches are spent)
    with pytest.raises(UserError, match=r"diverged: 3 non-finite steps in a row \(steps 8-10\); "
                                        r"the run stopped \(the last checkpoint is step 8\)"):
        main(cfg, synthetic_data, tmp_path / "run", progress=False)
    assert loads == []  # no dead rollback: nothing is loaded only to stop anyway
    events = [r for r in iter_records(tmp_path / "run" / "history.jsonl") if r["type"] == "event"]
    kinds = [e["kind"] for e in events]
    assert kinds.count("nonfinite_loss") == 4 and kinds[-1] == "diverged"
    assert [e["step"] for e in events if e["kind"] == "nonfinite_loss"] == [3, 8, 9, 10]
    # status and the dashboard (runstate) say diverged and give train's advice, not
    # "stopped (continue with --resume)", which replayed the same batches into it again
    from zhbert.history import DIVERGED_ADVICE
    from zhbert.runstate import collect
    assert collect(tmp_path / "run")["state"] == f"diverged at step 10: {DIVERGED_ADVICE}"


def test_a_skipped_last_step_still_evaluates_and_checkpoints(synthetic_data, tmp_path, monkeypatch):
    """A non-finite last step skipped the run's final eval and checkpoint (exit 0, status
    "stopped", and --resume ended the same way): a skipped step now only skips its log."""
    real = torch.nn.utils.clip_grad_norm_
    calls = {"n": 0}

    def last_is_nan(params, max_norm):
        calls["n"] += 1
        norm = real(params, max_norm)
        return norm * float("nan") if calls["n"] == 6 else norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", last_is_nan)
    run = tmp_path / "run"
    main(_cfg("train.steps=6", "train.log_every=2", "train.eval_every=4", "train.checkpoint_every=4"),
         synthetic_data, run, progress=False)
    from zhbert.checkpoint import list_checkpoints
    from zhbert.runstate import run_state
    assert [c.step for c in list_checkpoints(run)] == [4, 6]
    # step 5, taken, is logged at the end (at step 6's record) with no next step to wait for
    assert [(r["type"], r["step"]) for r in _records(run)] == [
        ("train", 2), ("train", 4), ("eval", 4), ("train", 6), ("eval", 6)]
    assert run_state(run, 6, 6) == "finished"


def test_bf16_run_keeps_fp32_weights_and_resumes_exactly(synthetic_data, tmp_path):
    """precision=bf16 trains a bf16 copy of fp32 master weights (precision.Bf16Weights):
    it learns, its checkpoints hold fp32, and resuming from one rebuilds the same copy."""
    import shutil
    import warnings

    from safetensors import safe_open
    cfg = _cfg("train.precision=bf16", "train.steps=8", "train.log_every=2",
               "train.eval_every=4", "train.checkpoint_every=4", "train.keep_last=5", "train.lr=5e-3")
    ref, run = tmp_path / "ref", tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a CPU without native bf16 warns that it is slow
        main(cfg, synthetic_data, ref, progress=False)
        train = _records(ref, ("train",))
        assert train[-1]["loss"] < train[0]["loss"]
        with safe_open(str(ref / "checkpoints" / "step_00000008" / "model.safetensors"), "pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}
        shutil.copytree(ref, run)
        shutil.rmtree(run / "checkpoints" / "step_00000008")
        main(cfg, synthetic_data, run, resume=True, progress=False)
    assert _records(run) == _records(ref)


def test_threads_option(synthetic_data, tmp_path, capsys):
    base = ["train", "--data", str(synthetic_data), "--out", str(tmp_path / "run"), "--no-progress"]
    sets = [x for s in SMALL + ["train.steps=2", "train.eval_every=2"] for x in ("--set", s)]
    with pytest.raises(SystemExit) as exc:
        cli_main(base + ["--threads", "0"] + sets)
    assert exc.value.code == 2 and "--threads: 0 is not a whole number >= 1" in capsys.readouterr().err
    before = torch.get_num_threads()
    try:
        assert cli_main(base + ["--threads", "1"] + sets) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_length_warmup_trains_short_then_full_and_resumes_exactly(synthetic_data, tmp_path):
    """data.warmup_len: the first steps train on half-length sequences (twice as many per
    batch); a run resumed from a checkpoint inside that phase writes the same history."""
    import shutil
    cfg = _cfg("data.warmup_len=32", "data.warmup_len_fraction=0.5", "train.steps=6", "train.log_every=1",
               "train.eval_every=3", "train.checkpoint_every=2", "train.keep_last=5")
    from zhbert.trainparts import build_loader
    loader = build_loader(cfg, synthetic_data)
    shapes = [tuple(next(loader)["input_ids"].shape) for _ in range(5)]
    assert shapes == [(16, 32)] * 3 + [(8, 64)] * 2
    ref, run = tmp_path / "ref", tmp_path / "run"
    main(cfg, synthetic_data, ref, progress=False)
    assert [r["step"] for r in _records(ref, ("eval",))] == [3, 6]
    shutil.copytree(ref, run)
    for step in (4, 6):
        shutil.rmtree(run / "checkpoints" / f"step_{step:08d}")
    main(cfg, synthetic_data, run, resume=True, progress=False)
    assert _records(run) == _records(ref)


def test_a_checkpoint_state_is_the_dict_of_the_trainers_parts():
    """Trainer.state_dict() is state.json's layout as the trainer has always written it
    (config hash, loader position, Progress's fields, interval sums), so the checkpoints of
    earlier runs resume: load_state_dict takes that layout back into every part."""
    from zhbert.distributed import Dist
    from zhbert.trainloop import Interval, Progress, Trainer

    class Loader:  # PretrainingLoader's own state_dict is tested in test_data
        def __init__(self):
            self.position = {"epoch": 0, "cursor": 0}

        def state_dict(self):
            return dict(self.position)

        def load_state_dict(self, d):
            self.position = dict(d)

    cfg = _cfg()
    tr = Trainer(cfg=cfg, dist=Dist(), device=torch.device("cpu"), run_dir=Path(os.devnull),
                 model=None, raw_model=None, optimizer=None, loader=Loader(), eval_batches=[],
                 autocast=None, scaler=None, tokens_per_step=0, progress=Progress(),
                 interval=Interval.zeros("cpu"))
    written = {"config_hash": cfg.hash(), "data": {"epoch": 2, "cursor": 17},
               "progress": {"step": 30, "tokens": 61440, "elapsed": 12.5, "nonfinite_in_a_row": 1},
               "interval": {"sums": [float(i) for i in range(9)], "tokens": 512}}
    tr.load_state_dict(written)
    assert tr.progress == Progress(step=30, tokens=61440, elapsed=12.5, nonfinite_in_a_row=1)
    assert tr.interval.sums.tolist() == written["interval"]["sums"] and tr.loader.position["cursor"] == 17
    assert json.dumps(tr.state_dict()) == json.dumps(written)  # same keys in the same order
    with pytest.raises(TypeError):
        tr.progress.load_state_dict({**written["progress"], "stray": 1})


def test_resuming_a_finished_run_adds_nothing_and_lengthening_one_is_explained(synthetic_data,
                                                                               tmp_path, capsys):
    """--resume of a complete run appended a header with nothing after it; asking for more
    steps was refused as "other settings" with only --force (which deletes it) to offer."""
    run = tmp_path / "run"
    args = ["train", "--data", str(synthetic_data), "--out", str(run), "--no-progress"]
    sets = sum((["--set", s] for s in SMALL + ["train.steps=2"]), [])
    assert cli_main(args + sets) == 0
    before = (run / "history.jsonl").read_text()
    assert cli_main(args + sets + ["--resume"]) == 0
    assert "already complete (step 2 of 2): nothing to train" in capsys.readouterr().err
    assert (run / "history.jsonl").read_text() == before
    assert cli_main(args + sets + ["--set", "train.steps=4", "--resume"]) == 2
    assert "cannot be lengthened" in capsys.readouterr().err


def test_resume_reads_the_runs_own_settings(synthetic_data, tmp_path, capsys):
    """`--resume` without --config and --set continues with the run's config.json (it had to
    repeat every flag of the run's start, and --config refused that config.json as TOML)."""
    run = tmp_path / "run"
    args = ["train", "--data", str(synthetic_data), "--out", str(run), "--no-progress"]
    sets = sum((["--set", s] for s in SMALL + ["train.steps=2", "train.lr=1e-4"]), [])
    assert cli_main(args + sets) == 0
    capsys.readouterr()
    assert cli_main(args + ["--resume"]) == 0
    assert f"resuming with the settings in {run / 'config.json'}" in capsys.readouterr().err
    from unittest import mock
    with mock.patch.dict(os.environ, {"RANK": "1"}):  # a torchrun process other than rank 0
        from zhbert.train import config_spec
        assert config_spec(SimpleNamespace(config=None, out=str(run), resume=True)) == str(run / "config.json")
    assert "resuming with" not in capsys.readouterr().err  # said once, by rank 0
    for spec in (run, run / "config.json"):  # a run's settings as --config, like a preset's
        assert cli_main(args + ["--resume", "--config", str(spec)]) == 0
    assert cli_main(args + ["--resume", "--config", str(run), "--set", "train.lr=2e-4"]) == 2
    assert "train.lr: 0.0001 -> 0.0002" in capsys.readouterr().err
    assert cli_main(args + ["--resume", "--force"]) == 2  # resumed, ignoring --force, before
    assert "give one of them" in capsys.readouterr().err
    (tmp_path / "other.json").write_text('{"a": 1}')
    assert cli_main(args + ["--resume", "--config", str(tmp_path / "other.json")]) == 2
    assert "is not a zhbert run's config.json" in capsys.readouterr().err
    # a sweep's base must be a preset or TOML (it stores the text): a run is refused by name
    space = Path(__file__).parents[1] / "examples" / "sweep_space.toml"
    assert cli_main(["sweep", str(space), "--data", str(synthetic_data), "--out",
                     str(tmp_path / "sweep"), "--config", str(run)]) == 2
    assert "a sweep's base is a preset" in capsys.readouterr().err


def test_resume_into_a_directory_without_a_run_is_refused(synthetic_data, tmp_path, capsys):
    """`--resume` with a mistyped --out trained a new run from step 0 ("no checkpoint ...
    starting at step 0"): a typo cost a whole run. Nothing is created there now."""
    typo = tmp_path / "typo"
    argv = ["train", "--data", str(synthetic_data), "--out", str(typo), "--no-progress", "--resume"]
    assert cli_main(argv) == 2
    assert f"--resume: {typo} holds no run to continue" in capsys.readouterr().err
    assert not typo.exists()
    typo.mkdir()  # an empty directory is no run either
    assert cli_main(argv) == 2 and not any(typo.iterdir())


def test_a_resume_across_a_change_of_the_masking_rule_says_so(synthetic_data, tmp_path, capsys):
    """Headers record the masking rule (data.masking_rule). A run started under another rule
    resumed silently onto other masks, its held-out set included; the resume warns, the
    analysis notes it, and the rule compared is that of the start whose steps are kept
    (after a fall-back behind an earlier resume too)."""
    from zhbert.analysis import load_history
    from zhbert.data import masking_rule

    rule = masking_rule(False)
    cfg = _cfg("train.steps=4", "train.log_every=1", "train.eval_every=2",
               "train.checkpoint_every=2", "train.keep_last=5")
    run = tmp_path / "run"
    main(cfg, synthetic_data, run, progress=False)
    hist = run / "history.jsonl"
    lines = [json.loads(line) for line in hist.read_text().splitlines()]
    assert lines[0]["type"] == "header" and lines[0]["masking"] == rule == "tokens/2"
    lines[0]["masking"] = "tokens/1"  # as if an older zhbert had started it
    hist.write_text("".join(json.dumps(r) + "\n" for r in lines))
    capsys.readouterr()
    for _ in range(2):  # the second time behind the first resume's header (resumed_from 2)
        shutil.rmtree(run / "checkpoints" / "step_00000004")
        main(cfg, synthetic_data, run, resume=True, progress=False)
        err = capsys.readouterr().err
        assert f"trained with masking rule tokens/1, and this zhbert draws masks by {rule}" in err
        assert "from step 2 the training batches mask other tokens" in err
    h = load_history(run)
    assert h.meta.masking == ("tokens/1", rule)
    assert any(f"changed the masking rule (tokens/1 -> {rule})" in n for n in h.notes)


@pytest.mark.parametrize("whole_word", [False, True])
def test_a_resume_of_a_run_that_recorded_no_masking_rule(tmp_path, capsys, whole_word):
    """A run from before the rule was recorded may have drawn token masks by the older
    rule: said as a possibility; whole-word masks have not changed, so nothing is said;
    a run of this zhbert's own rule resumes in silence."""
    from zhbert.data import masking_rule
    from zhbert.train import _kept_header, _warn_masking

    cfg = _cfg(f"data.whole_word={str(whole_word).lower()}")
    hist = tmp_path / "history.jsonl"
    hist.write_text(json.dumps({"type": "header", "run": "r"}) + "\n")
    _warn_masking(tmp_path, _kept_header(tmp_path, 100), cfg, 100)
    err = capsys.readouterr().err
    assert ("records no masking rule" in err and "from step 100" in err) is not whole_word
    assert whole_word or err.count("\n") == 1
    hist.write_text(json.dumps({"type": "header", "masking": masking_rule(whole_word)}) + "\n")
    _warn_masking(tmp_path, _kept_header(tmp_path, 100), cfg, 100)
    assert capsys.readouterr().err == ""


def test_a_resume_with_other_data_is_told_the_runs_own():
    """`--resume` with another --data (and no --config or --set) was told to leave out
    --config and --set (a newcomer's pass); it is told the run's data directory."""
    from zhbert.rundir import _other_run_message

    vocab = {"the vocabulary": ("/data/zh", "/data/en")}
    msg = _other_run_message(Path("runs/r"), vocab, resume=True)
    assert "to continue it, pass --data /data/zh, the data it was trained on;" in msg
    assert "--config" not in msg
    both = _other_run_message(Path("runs/r"), {**vocab, "train.lr": (1e-3, 2e-3)}, resume=True)
    assert "pass --data /data/zh, the data it was trained on and leave out --config and --set" in both
    again = _other_run_message(Path("runs/r"), {"the vocabulary": ("/data/zh", "/data/zh")}, resume=True)
    assert "restore the data it was trained on in /data/zh (prepared again since" in again
