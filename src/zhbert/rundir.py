"""A run directory belongs to one run: refusing to mix runs (another config, other data,
a lost config.json), clearing one on --force, and what --resume needs to find there."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from zhbert.config import Config, config_from_dict, describe_differences
from zhbert.errors import UserError
from zhbert.fileio import atomic_write_json, read_json
from zhbert.run import DATA_MANIFEST, EVAL_RESULTS, PROBE_DIR, PROBE_RESULTS, is_run_dir
from zhbert.runlock import LockHeld, WriterLock, is_locked, lock_path


# What a sweep writes into a trial's folder itself (zhbert.sweep.worker): train.log, opened
# before the trial's trainer starts, and pruned.json. Nothing else there is the sweep's.
SWEEP_TRIAL_FILES = frozenset({"train.log", "pruned.json"})
# What a run writes beside its config.json, and --force deletes
RUN_OUTPUTS = ("history.jsonl", "checkpoints", "tb", "analysis", EVAL_RESULTS, PROBE_RESULTS, PROBE_DIR)


def unrelated_files(run_dir: Path) -> list[str]:
    """The names in ``run_dir`` that make it no place for a run: [] where it is missing, not
    a folder (refused elsewhere), empty, a run's (``is_run_dir``, or ``orphaned``), a data
    directory (refused by prepare_run_dir with its own message) or a sweep trial's folder
    before its trainer starts (SWEEP_TRIAL_FILES only). Hidden names (.DS_Store, the run's
    own .train.lock) never count: a file manager or the lock writes them, not a person."""
    if not run_dir.is_dir() or is_run_dir(run_dir) or orphaned(run_dir) \
            or (run_dir / DATA_MANIFEST).exists():
        return []
    try:
        names = sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("."))
    except OSError:  # unreadable: creating the run's files there fails with its own message
        return []
    if all(n in SWEEP_TRIAL_FILES and (run_dir / n).is_file() for n in names):
        return []
    # a run's own outputs only (a stray file where its tb/ goes): the run's, not someone
    # else's; training says what it cannot write (a config.json of no run's is someone else's)
    if all(n in RUN_OUTPUTS for n in names):
        return []
    return names


def check_run_folder(run_dir: Path) -> None:
    """Refuse a --out that holds someone's unrelated files (notes, photos): the run was
    written beside them, where a later --force or checkpoint retention works."""
    names = unrelated_files(Path(run_dir))
    if names:
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise UserError(f"--out {run_dir} holds files that are not a zhbert run's ({shown}); a run "
                        "written there would mix with them: choose an empty or new folder for a "
                        "new run, or the run's own folder to resume it")


def prepare_run_dir(run_dir: Path, cfg: Config, data_info: dict, resume: bool, force: bool) -> None:
    """Refuse to mix runs: a run directory belongs to one config and one data set, and is
    never a data directory (a run written there would mix with, and --force clear, its files)
    nor a folder of unrelated files (``check_run_folder``)."""
    if (run_dir / DATA_MANIFEST).exists():  # also when --out is --data under another name
        raise UserError(f"{run_dir} is a data directory (it holds {DATA_MANIFEST}); choose "
                        "another --out for the run, e.g. runs/NAME")
    check_run_folder(run_dir)
    cfg_path = run_dir / "config.json"
    changed = run_changes(run_dir, cfg, data_info)
    if changed is not None:
        same = not changed
        if not same and not force:
            raise UserError(_other_run_message(run_dir, changed, resume))
        if same and not resume and not force:
            raise UserError(f"{run_dir} already holds this run; pass --resume to continue it "
                            "or --force to start over")
        if force and not resume:
            _clear_run(run_dir)
    elif orphaned(run_dir):  # a run whose config.json was lost: its files are no free space
        if not force:
            raise orphan_error(run_dir)
        _clear_run(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the run directory {run_dir}: {exc.strerror}; "
                        "choose a writable --out") from None
    atomic_write_json(cfg_path, {"config": cfg.to_dict(), "config_hash": cfg.hash(), "data": data_info})


def run_changes(run_dir: Path, cfg: Config, data_info: dict) -> dict[str, tuple] | None:
    """What ``cfg`` and the data change from the run in ``run_dir`` (None: no config.json):
    Config.differences, plus "the vocabulary" or "the data" (their directories)."""
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        return None
    old = read_json(cfg_path, "run config")
    changed = config_from_dict(old.get("config", {})).differences(cfg)
    was = old.get("data", {})
    if was.get("vocab_sha256") != data_info["vocab_sha256"]:
        changed["the vocabulary"] = (was.get("dir"), data_info["dir"])
    elif was.get("identity", data_info["identity"]) != data_info["identity"]:
        # the same vocabulary over other text (another split seed, other files): other
        # batches and another held-out set (runs from before the identity: not checked)
        changed["the data"] = (was.get("dir"), data_info["dir"])
    return changed


def _check_unedited(run_dir: Path) -> None:
    """config.json holds the hash of the config it was written with: another hash is an
    edit since (train.steps 60 -> 90 by hand). --resume read the edited settings, then
    refused every checkpoint as "another config", and moving them aside as it advised
    restarted the run at step 0. The edit is named (against the history's first header).
    Asked of a --resume only (``check_resume_target``, before the data are read): --force
    clears the run whatever its config says."""
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        return
    old = read_json(cfg_path, "run config")
    try:
        edited = isinstance(old, dict) and old.get("config_hash") not in (
            None, config_from_dict(old.get("config", {})).hash())
    except (UserError, TypeError, AttributeError, ValueError):
        return  # a config that does not read: open_run and load_config name it
    if not edited:
        return
    started = _started_config(cfg_path.parent)
    what = ""
    if started is not None:
        with contextlib.suppress(UserError, TypeError, AttributeError, ValueError):
            changed = config_from_dict(started).differences(config_from_dict(old["config"]))
            what = f" ({describe_differences(changed)})"
    raise UserError(f"{cfg_path} was edited after the run started{what}: a run keeps the settings "
                    "it started with (its checkpoints were made with them; train.steps sets its "
                    "lr schedule); put the old values back to continue it, or start a new run "
                    f"in another --out with `--config {cfg_path} --set KEY=VALUE`")


def _started_config(run_dir: Path) -> dict | None:
    """The config in the history's first header: the run's settings as it started."""
    try:
        with open(run_dir / "history.jsonl", encoding="utf-8") as f:
            first = json.loads(f.readline())
    except (OSError, ValueError):
        return None
    return first.get("config") if isinstance(first, dict) and isinstance(first.get("config"), dict) else None


def check_resume_target(run_dir: Path, cfg: Config, data_info: dict) -> None:
    """--resume's refusal of other settings or other data, asked before the data are read:
    a loader's complaint about other data (too few sequences) named fixes that --resume
    refuses (a smaller batch, the warm-up off) instead of the run's own --data."""
    _check_unedited(run_dir)
    changed = run_changes(run_dir, cfg, data_info)
    if changed:
        raise UserError(_other_run_message(run_dir, changed, resume=True))


def orphaned(run_dir: Path) -> bool:
    """Files of a run without its config.json: a history or a checkpoint."""
    from zhbert.checkpoint import list_checkpoints
    return (run_dir / "history.jsonl").exists() or bool(list_checkpoints(run_dir))


def orphan_error(run_dir: Path) -> UserError:
    return UserError(f"{run_dir} holds a run's history or checkpoints but no config.json (lost "
                     "or deleted); a new run there would append to that history and replace its "
                     "checkpoints: choose a new --out, or pass --force to delete them and start "
                     "over there")


def _other_run_message(run_dir: Path, changed: dict[str, tuple], resume: bool) -> str:
    fixes = []
    data = next((k for k in ("the vocabulary", "the data") if k in changed), None)
    if resume and data:  # another --data: it names the run's own
        was, now = changed[data]
        fixes.append(f"pass --data {was}, the data it was trained on" if was != now else
                     f"restore the data it was trained on in {was} (prepared again since, with "
                     f"{'another vocabulary' if data == 'the vocabulary' else 'other text or splits'})")
    if resume and set(changed) - {"the vocabulary", "the data"}:
        fixes.append("leave out --config and --set (--resume then reads its settings from "
                     f"{run_dir / 'config.json'})")
    fix = f"to continue it, {' and '.join(fixes)}; " if fixes else ""
    if resume and list(changed) == ["train.steps"]:
        fix = ("a run cannot be lengthened, since train.steps sets its lr schedule (`zhbert "
               f"predict {run_dir} --steps N` forecasts a longer one); ")
    return (f"{run_dir} holds a run with other settings ({describe_differences(changed)}); {fix}"
            "choose a new --out for a new run, or pass --force to delete that run and start "
            "over there")


def _clear_run(run_dir: Path) -> None:
    """Delete a run's files for --force, holding the locks of `zhbert eval` and `zhbert
    probe` on their results files meanwhile: one of them reading the run died with a
    traceback when its checkpoints went; now --force exits 2 naming its PID instead."""
    with contextlib.ExitStack() as held:
        for results in (EVAL_RESULTS, PROBE_RESULTS):
            try:  # held as what it is: an eval started meanwhile names train --force
                held.enter_context(WriterLock(lock_path(run_dir / results), "zhbert train --force"))
            except LockHeld as exc:
                raise UserError(f"--force would delete the run that another process reads: "
                                f"{exc}") from None
        _delete_run_files(run_dir)


def _delete_run_files(run_dir: Path) -> None:
    import shutil

    from zhbert.history import kept_copies
    for name in RUN_OUTPUTS:
        p = run_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    for copy in kept_copies(run_dir):  # the old run's history copies: not the new run's
        copy.unlink(missing_ok=True)


def check_resumable(run_dir: Path) -> None:
    """--resume needs a run to continue: without one it trained a new run from step 0, so
    a typo in --out cost a whole run. (A live trainer's lock there: _claim names its PID.)"""
    if (run_dir / "config.json").is_file() or is_locked(lock_path(run_dir / "train")):
        return
    if orphaned(run_dir):
        raise UserError(f"--resume: {run_dir / 'config.json'} is missing, so the run's settings "
                        "are unknown; restore it (a copy of the run), or pass --force without "
                        "--resume to delete the run and start over there")
    raise UserError(f"--resume: {run_dir} holds no run to continue (no config.json there); "
                    "check --out, or leave out --resume to start a new run")
