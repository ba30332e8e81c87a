"""A sweep's spec (SWEEP_DIR/sweep.json) and its Optuna study.

The study lives in an Optuna JournalStorage file, SWEEP_DIR/optuna.journal, guarded by
Optuna's JournalFileOpenLock (an O_EXCL lock file, safe on NFS v3+), unless
``--storage URL`` names an RDB (sqlite:///... for one machine, postgresql://... or
mysql://... for several; a relative sqlite path is made absolute where it is given,
see absolute_url). The spec is also kept in the study's user attributes, so a
worker on a machine that sees only the database can join with `--worker --storage URL`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable

from zhbert.errors import UserError
from zhbert.fileio import atomic_write_json, atomic_write_text, read_json, writing
from zhbert.outputs import json_object, output_kind
from zhbert.run import SWEEP_SPEC as SPEC_FILE
from zhbert.sweep.space import Space

JOURNAL = "optuna.journal"
BASE_TOML = "base.toml"
STUDY_ATTR = "zhbert_sweep"
DEFAULT_STUDY = "zhbert-sweep"  # the study name in a storage when --study names none
OBJECTIVES = {"acc": ("eval_mlm_acc", "maximize"), "loss": ("eval_mlm_loss", "minimize")}


@dataclass(frozen=True)
class SweepSpec:
    space: Space
    data: str                    # absolute path of the data directory
    config: str                  # preset name, or BASE_TOML (its text in config_text)
    config_text: str
    steps: int
    eval_every: int
    objective: str               # acc | loss
    trials: int                  # finished (complete + pruned) trials to reach
    budget_minutes: float | None
    pruner: str
    workers_per_machine: int
    sampler_seed: int
    storage: str                 # "" = the journal file in SWEEP_DIR
    study_name: str
    data_identity: str = ""      # DataDir.identity of its data ("": a sweep.json from before)

    @property
    def metric(self) -> str:
        return OBJECTIVES[self.objective][0]

    @property
    def direction(self) -> str:
        return OBJECTIVES[self.objective][1]

    def identity(self) -> str:
        """What makes two sweeps the same search (trials, budget, pruner, workers may change)."""
        d = {"space": self.space.to_json(), "config": self.config, "config_text": self.config_text,
             "steps": self.steps, "eval_every": self.eval_every, "objective": self.objective}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["space"] = self.space.to_json()
        d["identity"] = self.identity()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SweepSpec":
        d = {k: v for k, v in d.items() if k != "identity"}
        return cls(**{**d, "space": Space.from_json(d["space"])})

    def config_spec(self, sweep_dir: Path) -> str:
        """`--config` for the trials: the preset's name or the sweep's own copy of the file."""
        return self.config if self.config != BASE_TOML else str(sweep_dir / BASE_TOML)

    def trial_overrides(self, params: dict[str, Any], exact: Iterable[str] = ()) -> list[str]:
        # the sweep's own last: the later --set wins, and the sweep waits for these evals
        return self.space.overrides(params, exact) + [f"train.steps={self.steps}",
                                               f"train.eval_every={self.eval_every}"]


def started_with(spec: SweepSpec, key: str, value: Any, sweep_dir: Path) -> str | None:
    """None where ``value``, a start-only option (``key``: config, steps, objective,
    sampler_seed) as a resume gives it, is the sweep's own; else the sweep's own, as a
    message names it. A TOML --config is compared by its text with the sweep's copy (the
    sweep keeps no path to it); a resume that repeated the sweep's own options was refused."""
    if key != "config":
        own = getattr(spec, key)
        return None if value == own else str(own)
    if spec.config != BASE_TOML:
        return None if value == spec.config else spec.config
    try:
        same = Path(value).is_file() and Path(value).read_text(encoding="utf-8") == spec.config_text
    except (OSError, UnicodeDecodeError):
        same = False
    return None if same else f"another base config, copied to {sweep_dir / BASE_TOML}"


def spec_warmup_warning(spec: SweepSpec, sweep_dir: Path, steps_from: str = "train.steps") -> str | None:
    """space.warmup_warning for the sweep: where its trials can draw (or are fixed to) an lr
    warm-up of its steps or more (the base config's warm-up where the space sets none)."""
    from zhbert.config import load_config
    from zhbert.sweep.space import warmup_warning
    try:
        base = load_config(spec.config_spec(sweep_dir)).train.warmup_steps
    except UserError:  # a report of a joined sweep, without the base's copy: the space still says
        base = 0
    return warmup_warning(spec.space, base, spec.steps, steps_from)


def is_spec_json(d: Any) -> bool:
    """A sweep spec as SweepSpec.to_json wrote it since the first sweep (another program's
    sweep.json has not these keys); the sweep report carries one too."""
    return isinstance(d, dict) and {"space", "identity", "study_name", "objective"} <= d.keys()


output_kind(SPEC_FILE, "zhbert sweep", lambda folder: is_spec_json(json_object(folder / SPEC_FILE)))


def read_spec(sweep_dir: Path) -> SweepSpec | None:
    path = sweep_dir / SPEC_FILE
    if not path.exists():
        return None
    d = read_json(path, "sweep spec")
    # --force starts over only where sweep.json is a zhbert spec (outputs.check_out)
    fix = ("start the sweep again with --force" if is_spec_json(d)
           else "restore it from a backup, or start the sweep in another --out")
    try:
        return SweepSpec.from_json(d)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise UserError(f"{path} is not a zhbert sweep spec ({exc}); {fix}") from None


def no_sweep(sweep_dir: Path) -> UserError:
    """``sweep_dir`` holds no sweep.json: how to start one. Naming it as --out told a user to
    start a sweep in a data directory or a run, which check_out then refused."""
    empty = not sweep_dir.exists() or (sweep_dir.is_dir() and not any(sweep_dir.iterdir()))
    return UserError(f"{sweep_dir} holds no sweep (no {SPEC_FILE}); start one with `zhbert sweep "
                     f"SPACE.toml --data DATA --out {sweep_dir if empty else 'NEW_DIR'}`"
                     + ("" if empty else f" (a new or empty folder: {sweep_dir} holds other files)"))


def write_spec(sweep_dir: Path, spec: SweepSpec) -> None:
    with writing(sweep_dir):  # --out under /proc, on a read-only disk: one line
        sweep_dir.mkdir(parents=True, exist_ok=True)
    if spec.config == BASE_TOML:
        atomic_write_text(sweep_dir / BASE_TOML, spec.config_text)
    atomic_write_json(sweep_dir / SPEC_FILE, spec.to_json())


def safe_url(url: str) -> str:
    """``url`` as shown in messages: a database password hidden (sqlalchemy's ***)."""
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given
        return url


def _sqlite_url(url: str):
    """The parsed URL when it is a sqlite one, else None (unparsable: open_storage says so)."""
    try:
        from sqlalchemy.engine import make_url
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - an unparsable URL fails in open_storage, one line
        return None
    return parsed if parsed.get_backend_name() == "sqlite" else None


def _in_memory(parsed) -> bool:
    """A sqlite database that lives in the process: "sqlite://", "sqlite:///" (no file),
    ":memory:", and a `file:` URI with mode=memory or the name :memory:."""
    db = parsed.database
    if not db or db == ":memory:":
        return True
    return db.startswith("file:") and (parsed.query.get("mode") == "memory"
                                       or db[len("file:"):] in ("", ":memory:"))


def _relative_sqlite(url: str):
    """The parsed URL when it is a sqlite file named by a relative path, else None
    (in-memory and `file:` URI databases are left as they are)."""
    parsed = _sqlite_url(url)
    if parsed is None or _in_memory(parsed) or parsed.database.startswith("file:"):
        return None
    return None if Path(parsed.database).is_absolute() else parsed


def absolute_url(url: str) -> str:
    """--storage as kept in sweep.json: a relative sqlite path made absolute, because
    sqlite reads it from the current directory, so a sweep resumed or reported from
    another directory would open (or silently create) another database."""
    parsed = _relative_sqlite(url)
    if parsed is None:
        return url
    return parsed.set(database=str(Path(parsed.database).resolve())).render_as_string(hide_password=False)


def storage_url(url: str) -> str:
    """The argparse type of every --storage: ``absolute_url`` where the user typed it, and
    a URL of no lasting storage ("", an in-memory database) refused."""
    if not url.strip():  # an unset variable, `--storage "$DB"`: not the journal by accident
        raise argparse.ArgumentTypeError("empty URL: leave --storage out for the journal file "
                                         "in SWEEP_DIR, or give a database URL")
    sqlite = _sqlite_url(url)
    if sqlite is not None and _in_memory(sqlite):
        # the study lived in this process alone: other workers and `sweep report` never saw
        # it, and it was gone when the sweep ended
        raise argparse.ArgumentTypeError(
            f"{url} is an in-memory database, lost when this process ends and invisible to "
            "other workers and `zhbert sweep report`: name a file (sqlite:///path/sweep.db) or "
            "leave --storage out for the journal file in SWEEP_DIR")
    return absolute_url(url)


def require_database(url: str) -> None:
    """A sweep's storage read, not started (a report, a joining worker): a sqlite file must
    be there, or sqlite makes an empty one at a mistyped path and the sweep is "not found"."""
    parsed = _sqlite_url(url)
    if parsed is None or _in_memory(parsed) or parsed.database.startswith("file:"):
        return
    if not Path(parsed.database).is_file():
        raise UserError(f"--storage {safe_url(url)}: no database file {parsed.database}; give "
                        "the --storage the sweep was started with")


def open_storage(sweep_dir: Path, url: str):
    """The Optuna storage: the journal file in SWEEP_DIR, or an RDB URL (one clear line
    when it cannot be reached)."""
    import optuna
    from zhbert.sweep.journal import journal_backend

    if not url:
        path = str(sweep_dir / JOURNAL)
        with writing(sweep_dir):  # created if missing: a SWEEP_DIR that cannot be written
            sweep_dir.mkdir(parents=True, exist_ok=True)
            backend = journal_backend(path)
        return optuna.storages.JournalStorage(backend)
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    except Exception as exc:  # noqa: BLE001 - drivers raise many types; one line for all
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        rel = _relative_sqlite(url)  # only in a sweep.json written before absolute_url
        relative = (f" ({rel.database} is read from the current directory: run from the "
                    "one the sweep was started in)" if rel else "")
        raise UserError(f"cannot open the sweep storage {safe_url(url)}: {first}{relative}. Check "
                        "the URL, that the server is up and reachable, and its driver is installed "
                        "(PostgreSQL: pip install psycopg2-binary); or start the sweep without "
                        "--storage to use the journal file in SWEEP_DIR") from None


def _engine_kwargs(url: str) -> dict[str, Any]:
    # a server that does not answer should fail in seconds, not hang the sweep
    if url.startswith(("postgresql", "mysql")):
        return {"connect_args": {"connect_timeout": 10}}
    return {}


def load_study(storage, spec: SweepSpec, sampler_seed: int | None = None, pruner=None):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # constant_liar: a trial still running counts as a poor result, so a second worker does
    # not draw beside it (two workers' first trials read hidden 96, 3 heads, lr 0.001068 and
    # 0.001069: one wasted; Optuna's advice for parallel workers)
    sampler = optuna.samplers.TPESampler(seed=spec.sampler_seed if sampler_seed is None else sampler_seed,
                                         constant_liar=True)
    study = optuna.create_study(storage=storage, study_name=spec.study_name, direction=spec.direction,
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    stored = study.user_attrs.get(STUDY_ATTR)
    if stored is None:
        study.set_user_attr(STUDY_ATTR, spec.to_json())
    return study


def read_trials(sweep_dir: Path, spec: SweepSpec) -> list | None:
    """The sweep's trials as Optuna keeps them, read without a write (no study created, no
    journal or database file made); None where there is no study yet."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if spec.storage:
        require_database(spec.storage)
    elif not (sweep_dir / JOURNAL).is_file():
        return None
    try:
        study = optuna.load_study(study_name=spec.study_name, storage=open_storage(sweep_dir, spec.storage))
    except KeyError:
        return None
    return study.get_trials(deepcopy=False)


def trial_states(sweep_dir: Path, spec: SweepSpec) -> dict[str, str] | None:
    """Each trial directory's state as the sweep counts it (COMPLETE, PRUNED, FAIL,
    RUNNING, WAITING): its newest attempt's, as a retry runs in the directory it retries.
    None where there is no study yet."""
    trials = read_trials(sweep_dir, spec)
    if trials is None:
        return None
    states = {}
    for t in sorted(trials, key=lambda t: t.number):
        if t.user_attrs.get("trial_dir"):
            states[t.user_attrs["trial_dir"]] = t.state.name
    return states


def spec_from_storage(storage, study_name: str) -> SweepSpec:
    import optuna
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise UserError(f"the storage holds no sweep named {study_name!r}; start one with "
                        "`zhbert sweep SPACE.toml --data DATA --out SWEEP_DIR --storage URL`") from None
    if STUDY_ATTR not in study.user_attrs:
        raise UserError(f"study {study_name!r} was not made by zhbert sweep (no spec in it)")
    return SweepSpec.from_json(study.user_attrs[STUDY_ATTR])


def stored_identity(storage, study_name: str) -> str | None:
    import optuna
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return None
    d = study.user_attrs.get(STUDY_ATTR)
    return SweepSpec.from_json(d).identity() if d else None


def require_study(storage, spec: SweepSpec, sweep_dir: Path, url: str | None = None) -> None:
    """A resumed or reported sweep must find its own study in ``storage`` (opened from
    ``url``, default the sweep's): without it Optuna would create an empty one (another
    database: a moved file, or a relative sqlite path read from another directory) and its
    trials would reuse the trial directories of the first study, whose runs have other
    parameters."""
    stored = stored_identity(storage, spec.study_name)
    if stored == spec.identity():
        return
    url = spec.storage if url is None else url
    where = safe_url(url) if url else str(sweep_dir / JOURNAL)
    what = "no study" if stored is None else "another sweep's study"
    raise UserError(f"{where} holds {what} named {spec.study_name!r}, not the sweep of "
                    f"{sweep_dir / SPEC_FILE}: is it the storage the sweep was started with? "
                    f"Restore that storage, or start a new sweep (--out elsewhere)")


def start_over(sweep_dir: Path, url: str, study_name: str) -> None:
    """--force: forget the old sweep in SWEEP_DIR (its study, trials and report)."""
    if url:
        import optuna
        try:
            optuna.delete_study(study_name=study_name, storage=open_storage(sweep_dir, url))
        except KeyError:
            pass
    else:
        for name in (JOURNAL, JOURNAL + ".lock"):
            (sweep_dir / name).unlink(missing_ok=True)
    from zhbert.sweep.liveness import WORKERS
    # its registered workers too: --force found every one dead (liveness.start_over_if_idle)
    for name in ("trials", "report", WORKERS):
        shutil.rmtree(sweep_dir / name, ignore_errors=True)
    (sweep_dir / SPEC_FILE).unlink(missing_ok=True)


class SweepGone(UserError):
    """The sweep a process runs in was deleted or started over under it."""


def sweep_mark(sweep_dir: Path, spec: SweepSpec, storage=None, strict: bool = False):
    """What tells this sweep from one started over in its place (the same space, the same
    study name): its journal's first record, which names the process that created the study
    (Optuna's worker_id, a uuid; a new file may get the freed inode), or its study's id in the
    database; None where there is neither."""
    try:
        if not spec.storage:
            with open(sweep_dir / JOURNAL, "rb") as f:
                return f.readline(4096) or None
        storage = storage or open_storage(sweep_dir, spec.storage)
        return storage.get_study_id_from_name(spec.study_name)
    except (FileNotFoundError, KeyError):  # gone
        return None
    except OSError:  # a shared disk's ESTALE or EIO, too many open files: not "gone"
        if strict:   # (require_same_sweep asks again later); a first mark goes without
            raise
        return None


def require_same_sweep(sweep_dir: Path, spec: SweepSpec, mark, storage=None) -> None:
    """SweepGone where the sweep marked ``mark`` (``sweep_mark``) is no longer in
    ``sweep_dir``: a process that went on read a missing journal (a traceback) or wrote
    its trials into the new sweep."""
    try:
        now = sweep_mark(sweep_dir, spec, storage, strict=True)
    except OSError:  # a passing read error is no evidence the sweep was deleted: ask again later
        return
    if mark is None or now == mark:
        return
    raise SweepGone(f"{sweep_dir}: the sweep this process ran was deleted or started over "
                    "under it (--force, or its files removed), so it stopped and left the sweep "
                    f"there alone; `zhbert sweep {sweep_dir}` resumes whatever sweep is there now")


def trial_dir_name(number: int) -> str:
    """SWEEP_DIR-relative directory of the trial first run under Optuna number ``number``."""
    return f"trials/{number:04d}"


def trial_label(number: int, trial_dir: str | None) -> str:
    """A trial named by its directory, as the user finds it on disk. A retry runs in the
    directory of the attempt it retries under a new Optuna number (trial 1 in
    trials/0000, the next new trial in trials/0002): then Optuna's number is given too."""
    if not trial_dir:
        return f"Optuna trial {number}"
    return trial_dir if trial_dir == trial_dir_name(number) else f"{trial_dir} (Optuna trial {number})"


def with_runtime(spec: SweepSpec, **changes: Any) -> SweepSpec:
    """The spec with the options a resumed sweep may change (None = keep)."""
    return replace(spec, **{k: v for k, v in changes.items() if v is not None})
