"""`zhbert status RUN_DIR`: where a run stands (the seed's check_progress, done properly)."""

from __future__ import annotations

import json
from typing import Any

from zhbert.runstate import collect


def add_arguments(p) -> None:
    p.add_argument("run_dir", help="run directory made by `zhbert train`")
    p.add_argument("--json", action="store_true", help="machine-readable output")


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
             f"nsp acc {_fmt(t.get('nsp_acc'), True)}  lr {_fmt(t.get('lr'))}"
             # after a stop between logs, the latest record is older than the step reached
             + (f"  (logged at step {t['step']:,})" if t.get("step", s["step"]) != s["step"] else ""),
             f"held-out   mlm acc {_fmt(e.get('eval_mlm_acc'), True)}  "
             f"nsp acc {_fmt(e.get('eval_nsp_acc'), True)}  (step {e.get('step', '-')})",
             f"speed      {s['tokens_per_s']:,.0f} tokens/s in the last log interval"
             + (f", {s['average_tokens_per_s']:,.0f} over the run" if s["average_tokens_per_s"] else "")
             + f"  ETA {s['eta_seconds'] / 60:.1f} min",
             f"checkpoint {s['last_checkpoint'] if s['last_checkpoint'] is not None else '-'}",
             f"precision  {s['precision']} on {s['machine']}"]
    if s["starved_advice"]:
        lines.append(f"cpu        {s['starved_advice']}")
    print("\n".join(lines))
    return 0
