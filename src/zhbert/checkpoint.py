"""Safe, verifiable checkpoints (nothing is ever unpickled).

    RUN_DIR/checkpoints/step_00002000/
        model.safetensors      weights (tied embeddings stored once)
        optimizer.safetensors  AdamW moments, keyed "<param index>.<name>"
        state.json             step, config hash, optimizer param groups, data
                               position, log accumulators: everything else a
                               resume needs, as plain JSON
        meta.json              format, step, sha256 of the three files above

A checkpoint is written into a hidden temporary directory, fsynced, and
renamed into place, so a crash or a full disk leaves the previous checkpoints
untouched. `meta.json` checksums let resume skip a corrupt checkpoint, keep
retention from counting (or deleting) one among the newest it keeps, and have a new save
of its step move it aside (``step_N.corrupt-<UTC time>``) rather than replace it.
Dropout randomness is re-seeded from (seed, step, rank) every step by the
trainer, so no RNG state needs saving for an exact resume.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file, save_model

from zhbert.errors import UserError
from zhbert.fileio import (fsync_dir, temp_dir_for, unused_name, usual_permissions,
                           utc_stamp)
from zhbert.write_errors import no_space, write_fix

FORMAT_VERSION = 1
FILES = ("model.safetensors", "optimizer.safetensors", "state.json")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


@dataclass(frozen=True)
class CheckpointRef:
    step: int
    path: Path


def is_checkpoint_dir(path: Path) -> bool:
    """A training run's checkpoint folder (its checksums or AdamW moments), which holds
    model.safetensors as an export does: told apart by export and fill-mask."""
    return (path / "meta.json").is_file() or (path / "optimizer.safetensors").is_file()


def checkpoint_step(name: str) -> int | None:
    """The step a checkpoint folder's name (``checkpoint_name``) holds; None for another name."""
    return int(name[5:]) if name.startswith("step_") and name[5:].isdigit() else None


def list_checkpoints(run_dir: str | Path) -> list[CheckpointRef]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    refs = [CheckpointRef(checkpoint_step(p.name), p) for p in root.iterdir()
            if p.is_dir() and checkpoint_step(p.name) is not None]
    return sorted(refs, key=lambda r: r.step)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for name, value in st.items():
            tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
    return tensors, {"param_groups": sd["param_groups"]}


def save_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, state: dict[str, Any],
                    warn: Callable[[str], None] = _stderr) -> Path:
    """Write a complete checkpoint for `step`; returns its directory. A corrupt one of the
    same step is moved aside (``_make_room``), never replaced: nothing the user was told is
    left in place is deleted. Any OSError (the folder's, its temporary one's, a write's) is
    one UserError naming the folder and the fix; the previous checkpoints are untouched."""
    root = Path(run_dir) / "checkpoints"
    final, tmp = root / checkpoint_name(step), None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = temp_dir_for(final)
        _write_files(tmp, step, model, optimizer, state)
        _make_room(final, warn)
        os.replace(tmp, final)
        fsync_dir(root)
    except OSError as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        where = root if root.is_dir() else root.parent  # the folder that refused it
        need = (no_space(where, _checkpoint_bytes(model, optimizer),
                         lambda need, free: f"it needs about {_mb(need)}, {_mb(free)} free")
                if exc.errno == errno.ENOSPC else "")
        raise UserError(f"could not write checkpoint {final}: {exc.strerror or exc}{need}; the "
                        f"previous checkpoints are intact; {write_fix(exc, where)}") from None
    return final


def _write_files(tmp: Path, step: int, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """The checkpoint's four files in ``tmp``, fsynced."""
    safetensors_io(save_model, model, str(tmp / "model.safetensors"))
    opt_tensors, opt_json = _optimizer_tensors(optimizer)
    safetensors_io(save_file, opt_tensors, str(tmp / "optimizer.safetensors"))
    for name in ("model.safetensors", "optimizer.safetensors"):
        usual_permissions(tmp / name)
    full_state = {"format_version": FORMAT_VERSION, "step": step, **state, "optimizer": opt_json}
    (tmp / "state.json").write_text(json.dumps(full_state, ensure_ascii=False), encoding="utf-8")
    meta = {"format_version": FORMAT_VERSION, "step": step,
            "sha256": {f: _sha256(tmp / f) for f in FILES}}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    for f in (*FILES, "meta.json"):
        with open(tmp / f, "rb") as fh:
            os.fsync(fh.fileno())


def _make_room(final: Path, warn: Callable[[str], None]) -> None:
    """Clear the way for a new checkpoint at ``final``. One that verifies is this run's own
    save of the same step (a SIGTERM right after a save): replaced. A corrupt one (a resume
    fell back past it, and retention said it was left in place) is moved aside to
    ``<name>.corrupt-<UTC time>``, which no reader lists, and ``warn`` names it."""
    if not os.path.lexists(final):
        return
    # not the cached _verified: a checkpoint corrupted since this process hashed it
    problem = (verify_checkpoint(final) if final.is_dir() and not final.is_symlink()
               else "not a folder")
    if problem is None:
        shutil.rmtree(final)
        return
    aside = unused_name(final.with_name(f"{final.name}.corrupt-{utc_stamp()}"))
    os.replace(final, aside)
    warn(f"zhbert: moved the corrupt checkpoint {final} ({problem}) aside to {aside.name}, "
         "untouched, to save this step again; delete it once you no longer need it")


def safetensors_io(save, *args) -> None:
    """safetensors reports a full disk as SafetensorError("... (os error 28)"), which an
    ``except OSError`` misses: give such errors back their errno."""
    try:
        save(*args)
    except SafetensorError as exc:
        found = re.search(r"os error (\d+)", str(exc))
        if not found:  # not an I/O error (a programming error): as it is
            raise
        raise OSError(int(found.group(1)), os.strerror(int(found.group(1)))) from exc


def _checkpoint_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """What a checkpoint's tensors take on disk (tied weights counted twice: an upper bound)."""
    tensors = [*model.state_dict().values(),
               *(v for st in optimizer.state.values() for v in st.values() if torch.is_tensor(v))]
    return sum(t.numel() * t.element_size() for t in tensors)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def remove_partial(run_dir: str | Path) -> list[str]:
    """Remove the hidden ``.step_*.partial`` directories of saves that were killed midway,
    and the ``.step_*.deleting`` ones of deletions killed midway (``_delete``); returns
    their names. Only a process holding the run's train lock may call this: another
    trainer's save in progress looks the same."""
    root = Path(run_dir) / "checkpoints"
    gone = sorted(p.name for pattern in (".step_*.partial", ".step_*.deleting")
                  for p in root.glob(pattern) if p.is_dir())
    for name in gone:
        shutil.rmtree(root / name, ignore_errors=True)
    return gone


def verify_checkpoint(path: Path) -> str | None:
    """None when the checkpoint is complete and its checksums match, else why not."""
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), dict):
            # valid JSON of another shape ([1, 2], "x") is as unreadable as invalid JSON
            return "unreadable metadata (meta.json is not a checkpoint's metadata object)"
        if meta.get("format_version") != FORMAT_VERSION:
            return f"format version {meta.get('format_version')} (expected {FORMAT_VERSION})"
        for f in FILES:
            if _sha256(path / f) != meta["sha256"][f]:
                return f"{f} does not match its checksum"
    except FileNotFoundError as exc:
        return f"missing {Path(exc.filename).name}"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable metadata ({exc})"
    return None


class CheckpointGone(UserError):
    """The checkpoint's directory vanished while it was read: a running training's
    train.keep_last retention (or a user) deleted it. Readers of many checkpoints skip it."""


def skip_note(path: Path, problem: str) -> str:
    """The line for a checkpoint passed over: deleted since it was listed, or corrupt."""
    if not path.exists():
        return (f"zhbert: skipping checkpoint {path}: deleted since it was listed "
                "(train.keep_last retention of a run still training?)")
    return f"zhbert: skipping corrupt checkpoint {path}: {problem}"


def load_checkpoint(path: Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, *,
                    config_hash: str | None = None) -> dict[str, Any]:
    """Load weights (and optimizer state) in place; return state.json's content.

    Every reader of a checkpoint comes here, so here a checkpoint that is not this run's
    (state.json's config hash other than ``config_hash``, when given; tensors of other
    names or shapes; a model.safetensors that is no safetensors file, yet matches the
    checksum a copied meta.json gives it) is refused with one line (a UserError), all but
    other tensor names before any weight changes; one deleted while it is read raises
    CheckpointGone."""
    try:
        state = _read_state(path)
        if config_hash is not None and state.get("config_hash") != config_hash:
            raise _misfit(path, _hashes(state.get("config_hash"), config_hash))
        _check_fits(path, model)
        missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False)
        if missing or unexpected:
            raise _misfit(path, f"missing {missing[:3]}, unexpected {unexpected[:3]}")
        if optimizer is not None:
            _load_optimizer(path, optimizer, state)
    except (FileNotFoundError, SafetensorError) as exc:
        if not path.is_dir():  # retention renames the directory away before deleting it
            raise CheckpointGone(f"checkpoint {path} was deleted while it was read "
                                 "(train.keep_last retention of a run still training?); "
                                 "run this again") from None
        if isinstance(exc, FileNotFoundError):
            missing = Path(exc.filename or "a file").name
            raise UserError(f"checkpoint {path} is incomplete (missing {missing}); "
                            f"move it out of {path.parent} and run this again") from None
        raise _misfit(path, f"model.safetensors is unreadable: {exc}") from None
    return state


def _read_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except ValueError as exc:  # not JSON, or not UTF-8
        raise _misfit(path, f"its state.json is unreadable: {exc}") from None
    if not isinstance(state, dict):
        raise _misfit(path, "its state.json is not an object")
    return state


def _misfit(path: Path, detail: str) -> UserError:
    return UserError(f"checkpoint {path} does not fit this run's model ({detail}): was it made "
                     "with another config or vocabulary (copied from another run)? Move it out of "
                     f"{path.parent} and run this again")


def _check_fits(path: Path, model: torch.nn.Module) -> None:
    """Compare the file's tensor shapes with the model's from its header alone:
    load_state_dict raised a RuntimeError traceback on a size mismatch even with strict=False."""
    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    wrong = [f"{k} {list(shapes[k])} vs {list(v.shape)}" for k, v in model.state_dict().items()
             if k in shapes and shapes[k] != tuple(v.shape)]
    if wrong:
        raise _misfit(path, f"{len(wrong)} tensors of another shape, e.g. {wrong[0]}")


def _load_optimizer(path: Path, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    tensors = load_file(str(path / "optimizer.safetensors"))
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        opt_state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": opt_state,
                               "param_groups": state["optimizer"]["param_groups"]})


def latest_valid_checkpoint(run_dir: str | Path, warn=print,
                            problems: dict[int, str] | None = None,
                            config_hash: str | None = None) -> CheckpointRef | None:
    """The newest checkpoint that verifies; corrupt ones are reported and skipped, and
    their problems kept by step in ``problems`` when given (status names the newest's
    without reading its bytes again). With ``config_hash`` (status), one another config
    made (copied from another run: its own meta.json verifies it) is a problem too."""
    for ref in reversed(list_checkpoints(run_dir)):
        problem = verify_checkpoint(ref.path) or (
            _other_config(ref.path, config_hash) if config_hash else None)
        if problem is None:
            return ref
        if problems is not None:
            problems[ref.step] = problem
        warn(skip_note(ref.path, problem))
    return None


OTHER_CONFIG = "made by another config"  # how _other_config's problem starts: status tells it apart


def _other_config(path: Path, config_hash: str) -> str | None:
    """Why a verified checkpoint is not this run's: its state.json names another config
    (status asks; load_checkpoint refuses the same one)."""
    try:
        theirs = _read_state(path).get("config_hash")
    except (OSError, UserError):
        return "unreadable state.json"
    if theirs and theirs != config_hash:
        return f"{OTHER_CONFIG} ({_hashes(theirs, config_hash)}): copied from another run?"
    return None


def _hashes(theirs: Any, ours: str) -> str:
    return f"config hash {str(theirs)[:16]!r}, this run's {ours[:16]!r}"


_VERIFIED: dict[tuple[str, int], str | None] = {}


def _verified(path: Path) -> str | None:
    """``verify_checkpoint``, remembered per directory and meta.json time: retention asks at
    every save about the same few checkpoints (0.05 s each for a 36 MB `tiny` one, 20 saves
    in the demo)."""
    try:
        key = (str(path), (path / "meta.json").stat().st_mtime_ns)
    except OSError:
        return verify_checkpoint(path)
    if key not in _VERIFIED:
        _VERIFIED[key] = verify_checkpoint(path)
    return _VERIFIED[key]


def apply_retention(run_dir: str | Path, keep_last: int, keep_every: int,
                    warn: Callable[[str], None] = print) -> list[int]:
    """Delete checkpoints that are neither among the newest `keep_last` valid ones nor a
    multiple of `keep_every` (kept for studying the dynamics). Returns deleted steps.

    A checkpoint that fails ``verify_checkpoint`` neither counts toward `keep_last`
    (counting it would delete the good checkpoint a resume falls back to, to keep one no
    resume can use) nor is deleted (a user may still repair or inspect it): it is left
    untouched and named through `warn`. Only checkpoints that verify are ever deleted; one
    the OS will not let go is kept, named through `warn` too (``_delete``).
    """
    good, deleted = 0, []
    # Newest first, verifying each (never deleting one on the word of a file count); each is
    # hashed once per process: a checkpoint directory does not change once renamed into place
    for r in reversed(list_checkpoints(run_dir)):
        milestone = bool(keep_every) and r.step % keep_every == 0
        if milestone and good >= keep_last:
            continue  # kept whatever its state: no need to read it
        problem = _verified(r.path)
        if problem:
            warn(f"zhbert: warning: corrupt checkpoint {r.path} ({problem}) is left in place "
                 "and does not count toward train.keep_last; delete it or move it aside "
                 "yourself once you no longer need it")
        elif good < keep_last:
            good += 1
        elif _delete(r.path, warn):
            deleted.append(r.step)
    return sorted(deleted)


def _delete(path: Path, warn: Callable[[str], None] = _stderr) -> bool:
    """Out of the checkpoints first (one rename), then its bytes: a kill inside rmtree left
    a half-deleted ``step_*`` that every later run warned about as corrupt. The hidden
    ``.step_*.deleting`` a kill leaves goes with the next ``remove_partial``. A checkpoint
    the OS will not let go (an immutable or read-only folder) is kept, with a warning:
    nothing is lost by keeping it, so training goes on. True once it is gone."""
    doomed = path.with_name(f".{path.name}.deleting")
    try:
        os.replace(path, doomed)
    except OSError as exc:
        warn(f"zhbert: warning: could not delete the old checkpoint {path} (train.keep_last "
             f"retention): {exc.strerror or exc}; it is kept and training goes on. Make "
             f"{path.parent} writable (chmod/chattr) or delete it yourself")
        return False
    shutil.rmtree(doomed, ignore_errors=True)
    return True
