"""A run directory, opened once: its config, its data, its checkpoints, its model.

    RUN_DIR/config.json         {"config": Config.to_dict(), "config_hash", "data": {dir,
                                vocab_sha256, vocab_size}} written by `zhbert train`
    RUN_DIR/checkpoints/        see zhbert.checkpoint
    RUN_DIR/checkpoint_eval.jsonl, probe.jsonl
                                append-only results of `zhbert eval` / `zhbert probe`

The settings a run's Config implies for the model (``model_config_from``) and for
the data pipeline (``data_config``) are built here, so that training, evaluation,
probing, export and fill-mask all build the very same model and eval set. A model
directory written by `zhbert export` is opened here too (``load_exported``).
Commands import this module; it imports no command, and torch only when a
function needs it (so `status` and the dashboard can open a run cheaply).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from zhbert import argtypes
from zhbert.config import Config, config_from_dict
from zhbert.errors import UserError
from zhbert.fileio import read_json

if TYPE_CHECKING:
    from zhbert.checkpoint import CheckpointRef

EVAL_RESULTS = "checkpoint_eval.jsonl"  # `zhbert eval`'s results, one per (step, split, sequence cap)
PROBE_RESULTS = "probe.jsonl"           # `zhbert probe`'s, one per (step, task, mode, settings)
# probe's plot and its relation to MLM accuracy: its own folder, since `zhbert analyze`
# replaces RUN/analysis as a whole (probe's files there were deleted, or refused analyze)
PROBE_DIR = "probe"


# ----------------------------------------------------------------------------- settings

def data_config(cfg: Config, max_len: int | None = None):
    """The data pipeline's settings for a run (at ``max_len``, default data.max_len)."""
    from zhbert.data import DataConfig
    return DataConfig(max_len=max_len or cfg.data.max_len, mask_prob=cfg.data.mask_prob,
                      objective=cfg.model.objective, short_seq_prob=cfg.data.short_seq_prob,
                      whole_word=cfg.data.whole_word, seed=cfg.train.seed)


def model_config_from(cfg: Config, vocab_size: int):
    """The model's config for a run's Config (M = the data's static masked-slot count)."""
    from zhbert.modelconfig import ModelConfig
    return ModelConfig(**dataclasses.asdict(cfg.model), vocab_size=vocab_size,
                       max_predictions=data_config(cfg).max_predictions)


# ----------------------------------------------------------------------------- runs

@dataclass(frozen=True)
class Run:
    path: Path
    cfg: Config
    data_dir: Path
    vocab_sha256: str
    vocab_size: int
    config_hash: str = ""  # config.json's: each checkpoint's state.json must carry the same


DATA_MANIFEST = "manifest.json"  # marks a data directory (zhbert prepare; zhbert.datadir)
SWEEP_SPEC = "sweep.json"        # marks a sweep directory (zhbert sweep; zhbert.sweep.study)
EXPORT_MARKER = "model.safetensors"  # an exported (Hugging Face) model's weights; a run's top level never


def not_a_run_dir(path: str | Path) -> UserError | None:
    """Where a run was asked for: zhbert's other directories, named as what they are, with
    what to give instead (None: not one of them)."""
    path = Path(path)
    if (path / DATA_MANIFEST).exists():
        return UserError(f"{path} is a data directory (zhbert prepare), not a run: train on it "
                         f"with `zhbert train --data {path} --out RUN` and give RUN")
    if (path / SWEEP_SPEC).is_file():
        return UserError(f"{path} is a sweep, not a run: give one of its trials "
                         f"({path / 'trials' / '0000'}), or see `zhbert sweep report {path}`")
    return holds_runs(path, find_runs(path)) if path.is_dir() else None


def holds_runs(folder: Path, runs: list[Path]) -> UserError | None:
    """A folder given where one run was asked for, that holds ``runs`` below it: name them
    (None: it holds none)."""
    if len(runs) == 1:
        return UserError(f"{folder} is not a run but holds one, {runs[0]}: give that run directory")
    if len(runs) > 1:
        shown = ", ".join(map(str, runs[:5])) + (", ..." if len(runs) > 5 else "")
        return UserError(f"{folder} is a folder of {len(runs)} runs ({shown}), not a run; give one "
                         f"run directory (e.g. {runs[0]}), or see them together with `zhbert "
                         f"compare RUN RUN ...` / `zhbert monitor {folder}`")
    return None


def is_run_dir(path: str | Path) -> bool:
    """A `zhbert train` run directory (its config.json has a config hash) rather than a model dir."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return "config_hash" in json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


RUN_SEARCH_DEPTH = 3  # runs/group/sweep/run: deep enough for sweeps, cheap to rescan each poll


def find_runs(folder: Path, depth: int = RUN_SEARCH_DEPTH) -> list[Path]:
    """Folders up to ``depth`` levels below ``folder`` that hold a history.jsonl. Hidden
    folders, checkpoint folders and the inside of a run (its checkpoints, analysis) are
    not searched: they hold no runs, and skipping them keeps the rescan on each poll cheap."""
    try:
        subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                      and p.name != "checkpoints")
    except OSError:  # unreadable, or removed while we looked: no runs there
        return []
    found = []
    for p in subs:
        if (p / "history.jsonl").is_file():
            found.append(p)
        elif depth > 1:
            found += find_runs(p, depth - 1)
    return found


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
               vocab_sha256=data.get("vocab_sha256", ""), vocab_size=int(data["vocab_size"]),
               config_hash=str(meta.get("config_hash", "")))


def open_run_data(run: Run):
    """The run's data directory, checked to hold the vocabulary the run was trained with."""
    from zhbert.datadir import open_data_dir
    if not run.data_dir.is_dir():
        raise UserError(f"the data directory of run {run.path} is gone: {run.data_dir} "
                        "(config.json data.dir); restore it there or edit that path")
    return open_data_dir(run.data_dir, expect_vocab_sha256=run.vocab_sha256 or None)


# ----------------------------------------------------------------------------- checkpoints

def add_checkpoint_arguments(p) -> None:
    """--checkpoint STEP | --all-checkpoints, for the commands that read a run's checkpoints."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--all-checkpoints", action="store_true", help="every kept checkpoint that verifies")
    g.add_argument("--checkpoint", type=argtypes.count(0), metavar="STEP", help="the checkpoint of this step")


def select_checkpoints(run_dir: str | Path, step: int | None = None,
                       all_checkpoints: bool = False,
                       warn: Callable[[str], None] = lambda m: print(m, file=sys.stderr)
                       ) -> list[CheckpointRef]:
    """The checkpoints asked for: one step, all valid ones, or (default) the latest valid one.

    An explicitly named checkpoint that is missing or corrupt is an error; otherwise a
    corrupt one (or one deleted since it was listed) is reported and skipped. The latest
    alone is found newest first, hashing no more than it takes (a tester's default
    fill-mask beside ten kept 111 MB checkpoints: 2.50 s, against 1.86 s with --checkpoint).
    """
    from zhbert.checkpoint import (latest_valid_checkpoint, list_checkpoints, skip_note,
                                   verify_checkpoint)
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
    if all_checkpoints:
        valid = []
        for r in refs:
            problem = verify_checkpoint(r.path)
            if problem:
                warn(skip_note(r.path, problem))
            else:
                valid.append(r)
    else:
        latest = latest_valid_checkpoint(run_dir, warn=warn)
        valid = [latest] if latest else []
    if not valid:
        raise UserError(f"no checkpoint of {run_dir} verifies; they are all corrupt or incomplete")
    return valid


def default_device():
    import torch
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_run_model(run: Run, ref: CheckpointRef, device=None):
    """The run's model with the checkpoint's weights, in eval mode on ``device``."""
    return load_run_checkpoint(run, ref, device)[0]


def load_run_checkpoint(run: Run, ref: CheckpointRef, device=None):
    """(model, state.json) of a checkpoint: the state read with the weights, so that a
    checkpoint deleted right after they load (retention) cannot fail a later read of it.
    One whose config hash is not the run's (copied from another run) is refused."""
    from zhbert.checkpoint import load_checkpoint
    from zhbert.model import BertForPretraining

    model = BertForPretraining(model_config_from(run.cfg, run.vocab_size))
    state = load_checkpoint(ref.path, model, config_hash=run.config_hash or None)
    return model.to(device or default_device()).eval(), state


def state_tokens(state: dict[str, Any]) -> int | None:
    """The real tokens a checkpoint's state (state.json) had trained on."""
    return state.get("progress", {}).get("tokens")


# ----------------------------------------------------------------------------- results files

def read_results(path: Path) -> list[dict[str, Any]]:
    """Complete records of an append-only JSONL results file (a torn last line is ignored)."""
    from zhbert.history import iter_records
    return list(iter_records(path)) if path.exists() else []


def evals_by_step(records: list[dict[str, Any]], split: str = "validation") -> dict[int, dict[str, Any]]:
    """Each step's `zhbert eval` record on ``split``: the one over the most masked tokens
    (eval keeps one per --max-sequences; a quick look at 8 sequences must not replace the
    figure over the run's whole held-out set)."""
    out: dict[int, dict[str, Any]] = {}
    for r in _held_out(records, split):
        step = int(r["step"])
        if step not in out or r.get("eval_masked", 0) >= out[step].get("eval_masked", 0):
            out[step] = r
    return out


def evals_by_setting(records: list[dict[str, Any]], default_cap: int,
                     split: str = "validation") -> dict[int, dict[int, dict[str, Any]]]:
    """`zhbert eval`'s records on ``split`` by --max-sequences, then step: one cap is one eval
    set, and a figure across checkpoints (probe's correlation) compares only within one; each
    step's largest (evals_by_step) mixed 12,724 masked tokens with 465. A record from before
    the cap was kept counts as ``default_cap`` (data.eval_sequences), as `zhbert eval` takes it."""
    out: dict[int, dict[int, dict[str, Any]]] = {}
    for r in _held_out(records, split):
        out.setdefault(int(r.get("max_sequences", default_cap)), {})[int(r["step"])] = r
    return out


def _held_out(records: list[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("split", "validation") == split and "step" in r]


def last_line_end(f, size: int) -> int:
    """The offset just past the last b"\\n" in the open binary file ``f`` of ``size`` bytes
    (0: none), read backwards a block at a time: a torn record is short, the file may be large."""
    end = size
    while end > 0:
        start = max(0, end - (1 << 16))
        f.seek(start)
        at = f.read(end - start).rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0


def append_result(path: Path, record: dict[str, Any]) -> None:
    """Append one record durably. A torn last line (a killed writer) is cut off first,
    so the new record starts on its own line (a torn line over 64 KiB had cut as much of
    the records before it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                f.truncate(last_line_end(f, size))
        f.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


# ----------------------------------------------------------------------------- exported models

def model_config_from_hf(d: dict[str, Any], where: Path):
    """The ModelConfig of an exported model's config.json (`zhbert export` wrote it)."""
    from zhbert.modelconfig import HF_NAMES, ModelConfig
    if d.get("model_type") != "bert" or d.get("hidden_act", "gelu") != "gelu":
        raise UserError(f"{where} is not a post-LN BERT with exact GELU (model_type "
                        f"{d.get('model_type')!r}, hidden_act {d.get('hidden_act')!r}); zhbert "
                        "reads only models it exported")
    missing = [hf for hf in HF_NAMES.values() if hf not in d]
    if missing:
        raise UserError(f"{where} lacks {', '.join(missing)}; re-export the model with zhbert export")
    archs = d.get("architectures") or ["BertForPreTraining"]
    objective = "mlm" if "BertForMaskedLM" in archs else "mlm+nsp"
    return ModelConfig(objective=objective, **{k: d[hf] for k, hf in HF_NAMES.items()})


def load_exported(path: str | Path):
    """(model, vocab, model_max_length) from a directory written by ``export_run``."""
    from safetensors.torch import load_file
    from zhbert.model import TIED_KEYS, BertForPretraining
    from zhbert.vocab import Vocab

    path = Path(path)
    cfg = model_config_from_hf(read_json(path / "config.json", "model config"), path / "config.json")
    vocab = Vocab.load(path / "vocab.txt")
    if len(vocab) != cfg.vocab_size:
        raise UserError(f"{path / 'vocab.txt'} has {len(vocab)} tokens but config.json says "
                        f"vocab_size {cfg.vocab_size}; the directory is mixed up, re-export it")
    model = BertForPretraining(cfg)
    try:
        tensors = load_file(str(path / EXPORT_MARKER))
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise UserError(f"{path / EXPORT_MARKER} is unreadable ({exc}); re-export the model") from None
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if k not in TIED_KEYS]
    unexpected = [k for k in unexpected if not k.endswith("position_ids")]
    if missing or unexpected:
        raise UserError(f"{path / EXPORT_MARKER} does not fit its config.json (missing "
                        f"{missing[:3]}, unexpected {unexpected[:3]}); re-export the model")
    tok = read_json(path / "tokenizer_config.json", "tokenizer config") if (path / "tokenizer_config.json").exists() else {}
    max_len = min(int(tok.get("model_max_length", cfg.max_position_embeddings)), cfg.max_position_embeddings)
    return model, vocab, max_len
