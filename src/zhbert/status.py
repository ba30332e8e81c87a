"""`zhbert status RUN_DIR`: where a run stands (the seed's check_progress, done properly)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from zhbert.checkpoint import list_checkpoints
from zhbert.errors import UserError
from zhbert.history import read_history


def add_arguments(p) -> None:
    p.add_argument("run_dir", help="run directory made by `zhbert train`")
    p.add_argument("--json", action="store_true", help="machine-readable output")


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


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.2f}%" if pct else (f"{v:.4g}" if isinstance(v, float) else str(v))


def run(args) -> int:
    s = collect(args.run_dir)
    if args.json:
        print(json.dumps(s, ensure_ascii=False, indent=2))
        return 0
    t, e = s["train"], s["eval"]
    pct = f" ({s['percent']:.1f}%)" if s["percent"] is not None else ""
    lines = [f"run        {s['run']}  [{s['state']}]",
             f"step       {s['step']:,} / {s['total_steps']:,}{pct}",
             f"train      loss {_fmt(t.get('loss'))}  mlm acc {_fmt(t.get('mlm_acc'), True)}  "
             f"nsp acc {_fmt(t.get('nsp_acc'), True)}  lr {_fmt(t.get('lr'))}",
             f"held-out   mlm acc {_fmt(e.get('eval_mlm_acc'), True)}  "
             f"nsp acc {_fmt(e.get('eval_nsp_acc'), True)}  (step {e.get('step', '-')})",
             f"speed      {s['tokens_per_s']:,.0f} tokens/s  ETA {s['eta_seconds'] / 60:.1f} min",
             f"checkpoint {s['last_checkpoint'] if s['last_checkpoint'] is not None else '-'}",
             f"precision  {s['precision']} on {s['machine']}"]
    print("\n".join(lines))
    return 0
