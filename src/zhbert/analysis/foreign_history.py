"""Histories other tools leave behind, as ``History`` objects (``load_history`` picks
the reader): the seed study's JSON, a Hugging Face Trainer's trainer_state.json,
TensorBoard event files and CSV. zhbert's own formats are read in ``history``; so are the
TensorBoard events zhbert's trainer writes (tags "train/lr", "eval/eval_mlm_acc"), which
become the records they were written from."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

from zhbert.analysis.history import History, Meta, Record, build_history, zhbert_history
from zhbert.errors import UserError
from zhbert.run import holds_runs


def load_seed(obj: dict, path: Path, metric: str | None) -> History:
    steps = obj["steps"]
    names = [k for k, v in obj.items() if k != "steps" and isinstance(v, list)]
    bad = [k for k in names if len(obj[k]) != len(steps)]
    if bad:
        raise UserError(f"{path}: list(s) {', '.join(bad)} do not have one value per step "
                        f"({len(steps)} steps); the file is truncated or corrupt")
    records = [{"step": s, **{k: obj[k][i] for k in names}} for i, s in enumerate(steps)]
    return build_history(records, names, Meta("seed", str(path), path.stem), [], metric)


def load_hf(obj: dict, path: Path, metric: str | None) -> History:
    records, names = [], set()
    for entry in obj.get("log_history", []):
        if not isinstance(entry, dict) or "step" not in entry:
            continue
        rec = {k: v for k, v in entry.items() if isinstance(v, (int, float))}
        if "num_input_tokens_seen" in entry:
            rec["tokens"] = entry["num_input_tokens_seen"]
        # summary entries (train_runtime, ...) are not curves
        names |= {k for k in rec if k not in ("step", "epoch", "tokens", "num_input_tokens_seen",
                                             "total_flos") and not k.startswith("train_")}
        records.append(rec)
    meta = Meta("hf", str(path), path.parent.name, **_hf_throughput(obj))
    return build_history(records, names, meta, [], metric)


def _hf_throughput(obj: dict) -> dict[str, float | None]:
    for entry in reversed(obj.get("log_history", [])):
        if isinstance(entry, dict) and entry.get("train_steps_per_second"):
            return {"seconds_per_step": 1.0 / float(entry["train_steps_per_second"])}
    return {}


Scalar = tuple[str, int, float, float]  # (tag, step, wall time, value) of one TensorBoard event
# zhbert's trainer (trainloop._tb) tags each number of a history record "<record type>/<field>"
_ZHBERT_TB_TYPES = ("train", "eval")


def load_tensorboard(path: Path, metric: str | None) -> History:
    files = _event_files(path) if path.is_dir() else [path]
    scalars = [s for f in files for s in _tb_scalars(f)]
    if _written_by_zhbert({tag for tag, *_ in scalars}):
        return _zhbert_tensorboard(scalars, path, metric)
    records: list[Record] = [{"step": step, "seconds": wall, tag: value}
                             for tag, step, wall, value in scalars]
    if records:  # seconds since the first event, from the writer's wall clock
        t0 = min(r["seconds"] for r in records)
        for r in records:
            r["seconds"] -= t0
    return build_history(records, {tag for tag, *_ in scalars},
                         Meta("tensorboard", str(path), _tb_run(path)), [], metric)


def _event_files(folder: Path) -> list[Path]:
    """The event files of the one run ``folder`` is (or is the tb/ of): merging those of
    several runs made one fake run of a folder of runs (41 points, no error)."""
    files = sorted(folder.rglob("events.out.tfevents*"))
    runs = _runs_in(folder, files)
    if len(runs) > 1 or (runs and runs[0] not in (folder, folder.parent)):
        raise holds_runs(folder, runs)
    if not files:
        raise UserError(f"{folder} is not a zhbert run (no history.jsonl), nor a history this can "
                        "read (no TensorBoard event files (events.out.tfevents.*), trainer_state.json "
                        "or checkpoint_eval.jsonl in it); give a run directory made by `zhbert train "
                        "--data DATA --out RUN`, or a history file (history.jsonl, trainer_state.json, "
                        "events.out.tfevents.*, .csv, the seed's .json)")
    return files


def _runs_in(folder: Path, files: list[Path]) -> list[Path]:
    """The runs below ``folder``: zhbert runs (those `zhbert monitor` finds), and the
    directories holding event files, as TensorBoard counts runs; a zhbert run's tb/ (all
    its event files, a resume's included) counts as the run."""
    from zhbert.run import find_runs, is_run_dir

    def run_of(d: Path) -> Path:
        zhbert = d.name == "tb" and ((d.parent / "history.jsonl").is_file() or is_run_dir(d.parent))
        return d.parent if zhbert else d
    return sorted(set(find_runs(folder)) | {run_of(f.parent) for f in files})


def _tb_run(path: Path) -> str:
    return path.name if path.is_dir() else path.parent.name


def _tb_scalars(f: Path) -> list[Scalar]:
    """Every scalar of one event file: simple values, and one-number tensors (tf.summary v2)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(str(f), size_guidance={"scalars": 0, "tensors": 0})
    try:
        acc.Reload()
    except Exception as exc:  # tensorboard raises several types on corrupt files
        raise UserError(f"could not read TensorBoard events {f}: {exc}") from None
    tags = acc.Tags()
    out = [(tag, e.step, e.wall_time, e.value) for tag in tags.get("scalars", [])
           for e in acc.Scalars(tag)]
    for tag in tags.get("tensors", []):
        events = acc.Tensors(tag)
        vals = [tensor_util.make_ndarray(e.tensor_proto) for e in events]
        if vals and all(v.size == 1 and v.dtype.kind in "fiu" for v in vals):
            out += [(tag, e.step, e.wall_time, float(v.reshape(()))) for e, v in zip(events, vals)]
    return out


def _written_by_zhbert(tags: set[str]) -> bool:
    """Every zhbert train/eval record holds tokens and elapsed, so its events do too; other
    tools' tags (a Trainer's train/loss, eval/runtime, ...) never include both of these."""
    types = {tag.split("/", 1)[0] for tag in tags}
    return bool(tags) and types <= set(_ZHBERT_TB_TYPES) and any(
        {f"{t}/tokens", f"{t}/elapsed"} <= tags for t in types)


def _zhbert_tensorboard(scalars: list[Scalar], path: Path, metric: str | None) -> History:
    """The history.jsonl records the events were written from, read as the history is: the
    same metric names (eval_mlm_acc, lr, loss), elapsed as seconds, tokens as tokens."""
    lines: dict[tuple[str, int], dict] = {}
    for tag, step, _, value in scalars:
        kind, name = tag.split("/", 1)
        lines.setdefault((kind, step), {"type": kind, "step": step})[name] = value
    history = zhbert_history(list(lines.values()), [], path, metric)
    return replace(history, meta=replace(history.meta, source="tensorboard"))


_CSV_X = {"step": "step", "steps": "step", "global_step": "step", "tokens": "tokens",
          "elapsed": "seconds", "seconds": "seconds", "time": "seconds", "wall_time": "seconds"}


def load_csv(path: Path, metric: str | None) -> History:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; save the CSV as UTF-8") from None
    if not rows:
        raise UserError(f"{path} has no data rows (a header line, then one row per logged step)")
    cols = {c.strip().lower(): c for c in rows[0] if c is not None}
    if not any(_CSV_X.get(c) == "step" for c in cols):
        raise UserError(f"{path} has no 'step' column; columns are: {', '.join(cols)}")
    records = [{_CSV_X.get(k, k): r[orig] for k, orig in cols.items()
                if r.get(orig) not in (None, "")} for r in rows]
    names = [k for k in cols if k not in _CSV_X]
    return build_history(records, names, Meta("csv", str(path), path.stem), [], metric)
