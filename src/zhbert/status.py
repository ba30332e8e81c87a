"""`zhbert status RUN_DIR`: where a run stands (the seed's check_progress, done properly)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zhbert.runstate import collect, stopped_state


def add_arguments(p) -> None:
    p.add_argument("run_dir", help="run directory made by `zhbert train`")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.2f}%" if pct else (f"{v:.4g}" if isinstance(v, float) else str(v))


def newest_checkpoint_check(run_dir: Path, newest: int | None) -> dict[str, Any]:
    """Whether the newest checkpoint verifies (its checksums: the bytes --resume and
    fill-mask would load) and, if not, why and the newest one that does. A command's
    question, not the dashboard's: it reads every byte of the checkpoint."""
    from zhbert.checkpoint import checkpoint_name, latest_valid_checkpoint
    if newest is None:
        return {"checkpoint_problem": None, "last_valid_checkpoint": None}
    problems: dict[int, str] = {}  # each checkpoint read once, newest first
    valid = latest_valid_checkpoint(run_dir, warn=lambda _: None, problems=problems,
                                    config_hash=_config_hash(run_dir))
    removed = not (run_dir / "checkpoints" / checkpoint_name(newest)).exists()
    if newest not in problems or removed:  # it verified, or retention removed it meanwhile
        return {"checkpoint_problem": None, "last_valid_checkpoint": valid.step if valid else newest}
    return {"checkpoint_problem": problems[newest], "last_valid_checkpoint": valid.step if valid else None}


def _config_hash(run_dir: Path) -> str | None:
    """The run's config hash (config.json's), which its checkpoints' must equal; None where
    config.json is missing, damaged or of another shape: status reports what it can."""
    from zhbert.outputs import json_object
    found = json_object(run_dir / "config.json").get("config_hash")
    return found if isinstance(found, str) and found else None


def run(args) -> int:
    s = collect(args.run_dir)
    s.update(newest_checkpoint_check(Path(args.run_dir), s["last_checkpoint"]))
    if s["state"] == "finished" and s.get("checkpoint_problem"):  # --resume retrains from before
        s["state"] = stopped_state(Path(args.run_dir))
    if args.json:
        print(json.dumps(s, ensure_ascii=False, indent=2))
        return 0
    print("\n".join(_lines(s)))
    return 0


def _step_line(s: dict[str, Any]) -> str:
    if not s["total_steps"]:  # no header, and no config.json to say it
        return f"step       {s['step']:,} (total steps unknown)"
    pct = f" ({s['percent']:.1f}%)" if s["percent"] is not None else ""
    return f"step       {s['step']:,} / {s['total_steps']:,}{pct}"


def _speed_line(s: dict[str, Any]) -> str:
    if not s["train"]:
        return "speed      - (no train record yet)"
    return (f"speed      {s['tokens_per_s']:,.0f} tokens/s in the last log interval"
            + (f", {s['average_tokens_per_s']:,.0f} over the run" if s["average_tokens_per_s"] else "")
            # only a running run will get there: a stopped or pruned one has no arrival
            + (f"  ETA {s['eta_seconds'] / 60:.1f} min" if s["state"].startswith("running") else ""))


def _lines(s: dict[str, Any]) -> list[str]:
    t, e = s["train"], s["eval"]
    head = [f"run        {s['run']}  [{s['state']}]"]
    checkpoint = f"checkpoint {_fmt(s['last_checkpoint'])}"
    from zhbert.checkpoint import OTHER_CONFIG  # (imported by newest_checkpoint_check already)
    problem = s.get("checkpoint_problem")
    if problem and problem.startswith(OTHER_CONFIG):  # every reader refuses it
        checkpoint += (f" is not this run's ({problem}); move it out of "
                       f"{Path(s['run']) / 'checkpoints'}")
    elif problem:
        valid = s["last_valid_checkpoint"]
        checkpoint += (f" is corrupt ({problem}); " + (
            f"--resume and fill-mask use step {valid:,}" if valid is not None else
            "no checkpoint verifies: --resume starts over at step 0, fill-mask has none to load"))
    if s.get("history_note"):  # not one record: nothing else to report
        return head + [f"history    {s['history_note']}", _step_line(s), checkpoint]
    lines = head + [
        _step_line(s),
        f"train      loss {_fmt(t.get('loss'))}  mlm acc {_fmt(t.get('mlm_acc'), True)}  "
        f"nsp acc {_fmt(t.get('nsp_acc'), True)}  lr {_fmt(t.get('lr'))}"
        # after a stop between logs, the latest record is older than the step reached
        + (f"  (logged at step {t['step']:,})" if t.get("step", s["step"]) != s["step"] else ""),
        f"held-out   mlm acc {_fmt(e.get('eval_mlm_acc'), True)}  "
        f"nsp acc {_fmt(e.get('eval_nsp_acc'), True)}  (step {e.get('step', '-')})",
        _speed_line(s),
        checkpoint,
        f"precision  {_fmt(s['precision'])} on {_fmt(s['machine'])}"]
    if s.get("history_gap"):
        lines.append(f"history    {s['history_gap']}")
    if s["starved_advice"]:
        lines.append(f"cpu        {s['starved_advice']}")
    return lines
