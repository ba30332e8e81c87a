"""Checkpoints that verify but are not this run's, metadata of the wrong shape, checkpoints
deleted while they are read, and `train --force` under a reader: one line and exit 2 (or
a skip with a note), never a traceback, and nothing earlier destroyed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
import torch

from test_reliability_training import _train_args
from zhbert import checkpoint as C
from zhbert.cli import main as cli_main
from zhbert.errors import UserError
from zhbert.model import BertForPretraining
from zhbert.run import EVAL_RESULTS, PROBE_RESULTS, load_run_model, model_config_from, open_run
from zhbert.runlock import WriterLock, lock_path

THREADS = ["--threads", "1"]


@pytest.fixture(scope="module")
def finished_run(synthetic_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("checkpoint_faults") / "run"
    assert cli_main(_train_args(synthetic_data, run) + THREADS) == 0
    assert [r.step for r in C.list_checkpoints(run)] == [4, 8]
    return run


@pytest.fixture
def run(finished_run, tmp_path):
    return shutil.copytree(finished_run, tmp_path / "run")


def _ckpt(run, step):
    return run / "checkpoints" / f"step_{step:08d}"


def _foreign(run, step, config_hash="another run's"):
    """Another run's checkpoint (another vocabulary), copied in with its own meta.json:
    its checksums verify."""
    r = open_run(run)
    model = BertForPretraining(model_config_from(r.cfg, r.vocab_size + 7))
    C.save_checkpoint(run, step, model, torch.optim.AdamW(model.parameters()),
                      {"config_hash": config_hash})
    assert C.verify_checkpoint(_ckpt(run, step)) is None
    return _ckpt(run, step)


def _files(run):
    """Every file of the run and its bytes (lock files aside: they only name a holder)."""
    return {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and not p.name.endswith(".lock")}


def _cli(args, capsys):
    capsys.readouterr()
    rc = cli_main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def _readers(run, synthetic_data, tmp_path):
    return [["eval", str(run)], ["fill-mask", str(run), "的一[MASK]在"],
            ["export", str(run), "--out", str(tmp_path / "exported")],
            _train_args(synthetic_data, run) + THREADS + ["--resume"]]


# -- bug 1: a checkpoint that verifies but does not fit the run's model

def test_another_runs_checkpoint_is_refused_by_every_reader(run, synthetic_data, tmp_path, capsys):
    foreign = _foreign(run, 12)
    before = _files(run)
    for args in _readers(run, synthetic_data, tmp_path):
        rc, _, err = _cli(args, capsys)
        assert rc == 2, args
        line = err.strip().splitlines()[-1]
        assert f"checkpoint {foreign} does not fit this run's model" in line, args
        assert "another config or vocabulary" in line and f"Move it out of {foreign.parent}" in line
    assert _files(run) == before  # nothing destroyed, the foreign checkpoint included
    assert not (tmp_path / "exported").exists()


def test_tensors_of_another_shape_are_refused_before_any_weight_changes(run):
    """Same config hash (the check it passes), other shapes: load_state_dict raised a
    RuntimeError on a size mismatch even with strict=False."""
    foreign = _foreign(run, 12, config_hash=json.loads((run / "config.json").read_text())["config_hash"])
    model = load_run_model(open_run(run), C.CheckpointRef(8, _ckpt(run, 8)), torch.device("cpu"))
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UserError, match=r"does not fit this run's model \(\d+ tensors of another shape, "
                                        r"e\.g\. bert\.embeddings\.word_embeddings\.weight"):
        C.load_checkpoint(foreign, model)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_a_model_file_that_is_no_safetensors_but_matches_its_checksum(run, capsys):
    path = _ckpt(run, 8)
    (path / "model.safetensors").write_bytes(b"\xff" * 5000)
    meta = json.loads((path / "meta.json").read_text())
    meta["sha256"]["model.safetensors"] = hashlib.sha256(b"\xff" * 5000).hexdigest()
    (path / "meta.json").write_text(json.dumps(meta))
    rc, _, err = _cli(["fill-mask", str(run), "的一[MASK]在"], capsys)
    assert rc == 2
    assert f"checkpoint {path} does not fit this run's model (model.safetensors is unreadable" in err


# -- bug 2: meta.json that is JSON but no object

@pytest.mark.parametrize("meta", ["[1, 2]", '"x"', '{"format_version": 1, "sha256": [1]}'])
def test_meta_json_of_another_shape_is_unreadable_metadata(run, meta):
    (_ckpt(run, 8) / "meta.json").write_text(meta)
    assert C.verify_checkpoint(_ckpt(run, 8)).startswith("unreadable metadata")


def test_readers_skip_a_checkpoint_whose_meta_json_is_a_list(run, capsys):
    (_ckpt(run, 8) / "meta.json").write_text("[1, 2]")
    rc, out, err = _cli(["status", str(run)], capsys)
    assert rc == 0 and "checkpoint 8 is corrupt (unreadable metadata" in out
    rc, out, err = _cli(["fill-mask", str(run), "的一[MASK]在"], capsys)
    assert rc == 0 and f"skipping corrupt checkpoint {_ckpt(run, 8)}: unreadable metadata" in err
    assert "step 4" in err and out.count("[MASK] 1:") == 1  # the other checkpoint answers


# -- bug 3: checkpoints deleted while eval reads them; train --force under eval or probe

def test_eval_skips_a_checkpoint_deleted_after_the_listing(run, monkeypatch, capsys):
    from zhbert import evaluate, run as run_module
    real = run_module.select_checkpoints

    def then_retention(*args, **kwargs):  # a training run's retention, right after the listing
        refs = real(*args, **kwargs)
        C._delete(refs[0].path)
        return refs
    monkeypatch.setattr(run_module, "select_checkpoints", then_retention)
    capsys.readouterr()
    records = evaluate.evaluate_checkpoints(run, all_checkpoints=True, max_sequences=4,
                                            device=torch.device("cpu"), log=lambda m: None)
    assert [r["step"] for r in records] == [8] and records[0]["tokens"] > 0
    err = capsys.readouterr().err
    assert f"skipping checkpoint {_ckpt(run, 4)}: deleted since it was listed" in err


def test_probe_skips_a_checkpoint_deleted_after_the_listing(run, monkeypatch, capsys):
    from zhbert import probe, run as run_module
    from zhbert.probe import ProbeSettings, Task
    from synthetic import CHARS
    task = Task("toy", ("a", "b"), tuple((CHARS[i:i + 6], None, i % 2) for i in range(16)),
                tuple((CHARS[i:i + 6], None, i % 2) for i in range(20, 28)))
    real = run_module.select_checkpoints

    def then_retention(*args, **kwargs):
        refs = real(*args, **kwargs)
        C._delete(refs[0].path)
        return refs
    monkeypatch.setattr(run_module, "select_checkpoints", then_retention)
    capsys.readouterr()
    records = probe.probe_run(run, task, ProbeSettings(linear=True, epochs=1), all_checkpoints=True,
                              device=torch.device("cpu"), log=lambda m: None)
    assert [r["step"] for r in records] == [8] and records[0]["tokens"] > 0
    assert f"skipping checkpoint {_ckpt(run, 4)}: deleted since it was listed" in capsys.readouterr().err


def test_a_checkpoint_deleted_while_it_is_verified_is_named_deleted_not_corrupt(run, monkeypatch):
    from zhbert.run import select_checkpoints
    real = C.verify_checkpoint

    def retention_meanwhile(path):
        if path.name == "step_00000004":
            C._delete(path)
        return real(path)
    monkeypatch.setattr(C, "verify_checkpoint", retention_meanwhile)
    warned = []
    assert [r.step for r in select_checkpoints(run, all_checkpoints=True, warn=warned.append)] == [8]
    assert warned == [f"zhbert: skipping checkpoint {_ckpt(run, 4)}: deleted since it was listed "
                      "(train.keep_last retention of a run still training?)"]


def test_a_checkpoint_deleted_while_its_weights_load_is_checkpoint_gone(run, monkeypatch):
    real = C.load_model

    def deleted_first(model, filename, **kw):
        C._delete(_ckpt(run, 8))
        return real(model, filename, **kw)
    monkeypatch.setattr(C, "load_model", deleted_first)
    with pytest.raises(UserError, match="was deleted while it was read") as gone:
        load_run_model(open_run(run), C.CheckpointRef(8, _ckpt(run, 8)), torch.device("cpu"))
    assert gone.type.__name__ == "CheckpointGone"  # the kind eval skips


@pytest.mark.parametrize("results, what", [(EVAL_RESULTS, "zhbert eval"), (PROBE_RESULTS, "zhbert probe")])
def test_train_force_refuses_a_run_that_eval_or_probe_reads(run, synthetic_data, capsys, results, what):
    before = _files(run)
    with WriterLock(lock_path(run / results), what):  # a live eval or probe: this process
        rc, _, err = _cli(_train_args(synthetic_data, run) + THREADS + ["--force"], capsys)
    assert rc == 2
    assert "--force would delete the run that another process reads" in err
    assert f"{what} is running as PID {os.getpid()}" in err
    assert _files(run) == before  # nothing deleted


# -- bug 4: the latest checkpoint alone is found newest first

def test_the_latest_checkpoint_alone_hashes_only_what_it_takes(run, monkeypatch):
    from zhbert.run import select_checkpoints
    shutil.copytree(_ckpt(run, 4), _ckpt(run, 2))
    hashed = []
    monkeypatch.setattr(C, "_sha256", lambda p, real=C._sha256: hashed.append(p.parent.name) or real(p))
    assert [r.step for r in select_checkpoints(run)] == [8]
    assert set(hashed) == {"step_00000008"}
    os.truncate(_ckpt(run, 8) / "model.safetensors", 100)
    hashed.clear()
    warned = []
    assert [r.step for r in select_checkpoints(run, warn=warned.append)] == [4]
    assert set(hashed) == {"step_00000008", "step_00000004"} and len(warned) == 1
    hashed.clear()  # every checkpoint is used: every one is verified
    assert [r.step for r in select_checkpoints(run, all_checkpoints=True, warn=warned.append)] == [2, 4]
    assert set(hashed) == {"step_00000002", "step_00000004", "step_00000008"}


def test_status_names_a_checkpoint_of_another_config(run, capsys):
    """status had reported another run's checkpoint as this run's newest, with no word."""
    _foreign(run, 12)
    rc, out, _ = _cli(["status", str(run)], capsys)
    assert rc == 0 and "checkpoint 12 is not this run's (made by another config" in out
    assert f"move it out of {run / 'checkpoints'}" in out


def test_status_reports_a_run_whose_config_json_is_of_another_shape(run, capsys):
    """Reading the config hash through open_run raised KeyError: a traceback (a review)."""
    (run / "config.json").write_text(json.dumps({"config": {}, "data": {"dir": "x"}}))
    rc, out, _ = _cli(["status", str(run)], capsys)
    assert rc == 0 and "checkpoint 8" in out
