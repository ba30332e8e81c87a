"""Where a run stands, computed from its directory: state (running / finished /
stopped), step, speed, ETA, the latest train and eval records, the last checkpoint.

The `status` command renders it; `train`'s closing line, the dashboard and the sweep
worker ask it too, so it lives here, below every command module.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from zhbert.checkpoint import list_checkpoints
from zhbert.errors import UserError
from zhbert.history import read_history


def run_state(run_dir: Path, total: int, last_step: int) -> str:
    """running / finished / stopped, from the run's pid marker and its progress."""
    marker = run_dir / "running.json"
    if marker.exists():
        try:
            info = json.loads(marker.read_text())
            if info.get("host") != socket.gethostname():
                return "running (on " + str(info.get("host")) + ")"
            os.kill(int(info["pid"]), 0)
            return "running"
        except (ProcessLookupError, ValueError, KeyError, json.JSONDecodeError):
            pass  # the process died without cleaning up: it was killed
        except PermissionError:
            return "running"
    return "finished" if total and last_step >= total else "stopped (continue with --resume)"


def latest(records: list[dict[str, Any]], into: dict[str, dict] | None = None) -> dict[str, dict]:
    """The last record of each type ("header", "train", "eval", "event"); ``into`` is
    updated in place, so a reader that follows a file keeps it current from new records."""
    last = {} if into is None else into
    for rec in records:
        last[rec.get("type")] = rec
    return last


def collect(run_dir: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if not (run_dir / "history.jsonl").exists():
        raise UserError(f"{run_dir} is not a zhbert run (no history.jsonl); "
                        "start one with `zhbert train --data DATA --out RUN`")
    return summarize(run_dir, latest(read_history(run_dir / "history.jsonl").records))


def summarize(run_dir: Path, last: dict[str, dict]) -> dict[str, Any]:
    """Where the run stands, from the last header, train and eval records (``latest``)."""
    header, last_train, last_eval = (last.get(k, {}) for k in ("header", "train", "eval"))
    total = int(header.get("total_steps") or 0)
    step = int(last_train.get("step", 0))
    tps = last_train.get("tokens_per_s") or 0
    elapsed = last_train.get("elapsed") or 0.0  # training seconds, summed across resumes
    eta = (total - step) * elapsed / step if step > 0 and total > step else 0.0
    ckpts = list_checkpoints(run_dir)
    return {"run": str(run_dir), "state": run_state(run_dir, total, step), "step": step,
            "total_steps": total, "percent": 100.0 * step / total if total else None,
            "train": last_train, "eval": last_eval, "tokens_per_s": tps,
            "eta_seconds": eta, "last_checkpoint": ckpts[-1].step if ckpts else None,
            "precision": header.get("precision"), "machine": header.get("machine")}
