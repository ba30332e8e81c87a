"""Histories other tools leave behind, as ``History`` objects (``load_history`` picks
the reader): the seed study's JSON, a Hugging Face Trainer's trainer_state.json,
TensorBoard event files and CSV. zhbert's own formats are read in ``history``."""

from __future__ import annotations

import csv
from pathlib import Path

from zhbert.analysis.history import History, Meta, Record, build_history
from zhbert.errors import UserError


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


def load_tensorboard(path: Path, metric: str | None) -> History:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    files = sorted(path.rglob("events.out.tfevents*")) if path.is_dir() else [path]
    if not files:
        raise UserError(f"no TensorBoard event files (events.out.tfevents.*) under {path}")
    records: list[Record] = []
    names: set[str] = set()
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0, "tensors": 0})
        try:
            acc.Reload()
        except Exception as exc:  # tensorboard raises several types on corrupt files
            raise UserError(f"could not read TensorBoard events {f}: {exc}") from None
        tags = acc.Tags()
        for tag in tags.get("scalars", []):
            names.add(tag)
            records += [{"step": e.step, "wall": e.wall_time, tag: e.value} for e in acc.Scalars(tag)]
        for tag in tags.get("tensors", []):
            events = acc.Tensors(tag)
            vals = [tensor_util.make_ndarray(e.tensor_proto) for e in events]
            if vals and all(v.size == 1 and v.dtype.kind in "fiu" for v in vals):
                names.add(tag)
                records += [{"step": e.step, "wall": e.wall_time, tag: float(v.reshape(()))}
                            for e, v in zip(events, vals)]
    if records:  # seconds since the first event, from the writer's wall clock
        t0 = min(r["wall"] for r in records)
        for r in records:
            r["seconds"] = r.pop("wall") - t0
    return build_history(records, names, Meta("tensorboard", str(path), path.name if path.is_dir()
                                      else path.parent.name), [], metric)


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
