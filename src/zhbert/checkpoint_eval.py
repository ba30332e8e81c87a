"""`zhbert eval`: re-evaluate a run's kept checkpoints on a held-out split.

Training evaluates on the validation split as it goes; this evaluates finished
checkpoints afterwards (another split, more sequences, a checkpoint whose eval
was lost) with the same fixed sequences and masking (data.build_eval_set), so
the figures are comparable with the history's. Results are appended to
RUN_DIR/checkpoint_eval.jsonl, one record per (step, split), each fsynced
before the next checkpoint is started: a killed job loses at most the
checkpoint in progress, and a rerun skips what is already there.

Also the shared way to open a run and load one of its checkpoints
(``open_run``, ``select_checkpoints``, ``load_run_model``), used by fill-mask,
export and probe.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from zhbert.checkpoint import CheckpointRef, list_checkpoints, verify_checkpoint
from zhbert.config import Config, config_from_dict
from zhbert.errors import UserError
from zhbert.fileio import read_json

RESULTS = "checkpoint_eval.jsonl"
SPLITS = ("validation", "test")


# ----------------------------------------------------------------------------- runs

@dataclass(frozen=True)
class Run:
    path: Path
    cfg: Config
    data_dir: Path
    vocab_sha256: str
    vocab_size: int


def is_run_dir(path: str | Path) -> bool:
    """A `zhbert train` run directory (its config.json has a config hash) rather than a model dir."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return "config_hash" in json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def open_run(run_dir: str | Path) -> Run:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}; give the --out of a `zhbert train` run")
    meta = read_json(run_dir / "config.json", "run config",
                     f"{run_dir} is not a run directory; give the --out of a `zhbert train` run")
    if "config" not in meta or "data" not in meta:
        raise UserError(f"{run_dir / 'config.json'} is not a zhbert run config "
                        "(no 'config'/'data'); point at a directory made by zhbert train")
    data = meta["data"]
    return Run(path=run_dir, cfg=config_from_dict(meta["config"]), data_dir=Path(data["dir"]),
               vocab_sha256=data.get("vocab_sha256", ""), vocab_size=int(data["vocab_size"]))


def open_run_data(run: Run):
    """The run's data directory, checked to hold the vocabulary the run was trained with."""
    from zhbert.datadir import open_data_dir
    if not run.data_dir.is_dir():
        raise UserError(f"the data directory of run {run.path} is gone: {run.data_dir} "
                        "(config.json data.dir); restore it there or edit that path")
    return open_data_dir(run.data_dir, expect_vocab_sha256=run.vocab_sha256 or None)


def select_checkpoints(run_dir: str | Path, step: int | None = None,
                       all_checkpoints: bool = False,
                       warn: Callable[[str], None] = lambda m: print(m, file=sys.stderr)
                       ) -> list[CheckpointRef]:
    """The checkpoints asked for: one step, all valid ones, or (default) the latest valid one.

    An explicitly named checkpoint that is missing or corrupt is an error; with
    --all-checkpoints a corrupt one is reported and skipped.
    """
    refs = list_checkpoints(run_dir)
    if not refs:
        raise UserError(f"{run_dir} has no checkpoints (nothing under {Path(run_dir) / 'checkpoints'})")
    if step is not None:
        found = [r for r in refs if r.step == step]
        if not found:
            raise UserError(f"{run_dir} has no checkpoint at step {step}; it has steps "
                            f"{', '.join(str(r.step) for r in refs)}")
        problem = verify_checkpoint(found[0].path)
        if problem:
            raise UserError(f"checkpoint {found[0].path} is corrupt ({problem}); pick another --checkpoint")
        return found
    valid = []
    for r in refs:
        problem = verify_checkpoint(r.path)
        if problem:
            warn(f"zhbert: skipping corrupt checkpoint {r.path}: {problem}")
        else:
            valid.append(r)
    if not valid:
        raise UserError(f"no checkpoint of {run_dir} verifies; they are all corrupt or incomplete")
    return valid if all_checkpoints else valid[-1:]


def default_device():
    import torch
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_run_model(run: Run, ref: CheckpointRef, device=None):
    """The run's model with the checkpoint's weights, in eval mode on ``device``."""
    from zhbert.checkpoint import load_checkpoint
    from zhbert.model import BertForPretraining
    from zhbert.train import model_config_from

    model = BertForPretraining(model_config_from(run.cfg, run.vocab_size))
    load_checkpoint(ref.path, model)
    return model.to(device or default_device()).eval()


def checkpoint_state(ref: CheckpointRef) -> dict[str, Any]:
    return read_json(ref.path / "state.json", "checkpoint state")


def checkpoint_tokens(ref: CheckpointRef) -> int | None:
    return checkpoint_state(ref).get("progress", {}).get("tokens")


# ----------------------------------------------------------------------------- results file

def read_results(path: Path) -> list[dict[str, Any]]:
    """Complete records of an append-only JSONL results file (a torn last line is ignored)."""
    from zhbert.history import iter_records
    return list(iter_records(path)) if path.exists() else []


def append_result(path: Path, record: dict[str, Any]) -> None:
    """Append one record durably. A torn last line (a killed writer) is cut off first,
    so the new record starts on its own line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(max(0, size - 65536))
            tail = f.read()
            if not tail.endswith(b"\n"):
                cut = tail.rfind(b"\n")
                f.truncate(size - len(tail) + cut + 1 if cut >= 0 else max(0, size - len(tail)))
        f.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


# ----------------------------------------------------------------------------- evaluation

def evaluate_checkpoints(run_dir: str | Path, step: int | None = None, all_checkpoints: bool = False,
                         split: str = "validation", max_sequences: int | None = None,
                         device=None, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Evaluate the selected checkpoints not yet in checkpoint_eval.jsonl; return the new records."""
    from zhbert.data import build_eval_set
    from zhbert.evaluate import evaluate
    from zhbert.machine import detect_capabilities
    from zhbert.precision import autocast_context, resolve_precision
    from zhbert.train import data_config  # training's settings: the history's eval set

    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    run = open_run(run_dir)
    out = run.path / RESULTS
    done = {(r.get("step"), r.get("split")) for r in read_results(out)}
    todo = [r for r in select_checkpoints(run.path, step, all_checkpoints) if (r.step, split) not in done]
    if not todo:
        log(f"zhbert: nothing to evaluate; {out} already has every selected checkpoint on {split}")
        return []
    device = device or default_device()
    # the run's own precision, as resolved on this machine (what its history evals used)
    precision = resolve_precision(run.cfg.train.precision, detect_capabilities(device)).precision
    batches = build_eval_set(open_run_data(run), split, data_config(run.cfg),
                             max_sequences=max_sequences or run.cfg.data.eval_sequences)
    records = []
    for ref in todo:
        model = load_run_model(run, ref, device)
        metrics = evaluate(model, batches, device, lambda: autocast_context(precision, device),
                           run.cfg.model.objective)
        rec = {"step": ref.step, "tokens": checkpoint_tokens(ref), "split": split, **metrics}
        append_result(out, rec)
        records.append(rec)
        lo, hi = metrics["eval_mlm_acc_ci95"]
        log(f"step {ref.step:>8}  {split}  mlm_acc {metrics['eval_mlm_acc']:.4f} "
            f"[{lo:.4f}, {hi:.4f}]  loss {metrics['eval_mlm_loss']:.4f}  "
            f"masked {metrics['eval_masked']}")
    return records


# ----------------------------------------------------------------------------- CLI

def add_checkpoint_arguments(p) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--all-checkpoints", action="store_true", help="every kept checkpoint that verifies")
    g.add_argument("--checkpoint", type=int, metavar="STEP", help="the checkpoint of this step")


def add_arguments(p) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory made by zhbert train")
    add_checkpoint_arguments(p)
    p.add_argument("--split", choices=SPLITS, default="validation")
    p.add_argument("--max-sequences", type=int, metavar="N",
                   help="held-out sequences to evaluate (default: the run's data.eval_sequences)")


def run(args) -> int:
    if args.max_sequences is not None and args.max_sequences < 1:
        raise UserError(f"--max-sequences must be at least 1, got {args.max_sequences}")
    evaluate_checkpoints(args.run_dir, args.checkpoint, args.all_checkpoints, args.split,
                         args.max_sequences)
    print(f"results in {Path(args.run_dir) / RESULTS}")
    return 0
