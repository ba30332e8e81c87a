"""Cost of one dashboard poll on a long history: `zhbert monitor`'s /api/runs.

    python -m benchmarks.monitor_poll [--records 50000] [--polls 20]

Writes a history.jsonl of --records train records (about 230 bytes each) into a
temporary folder, starts the dashboard app in-process (Starlette's TestClient, no
sockets), makes one warm-up poll, then times --polls polls of /api/runs: the run
table every open page asks for every 2 seconds. Before the history reader kept
its offset, each poll re-read and re-parsed the whole file (status.collect); now
a poll parses only the bytes appended since the previous one.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common


def write_history(run: Path, n: int) -> None:
    run.mkdir(parents=True)
    with open(run / "history.jsonl", "w") as f:
        f.write(json.dumps({"type": "header", "total_steps": 4 * n, "tokens_per_step": 4096}) + "\n")
        for s in range(1, n + 1):
            f.write(json.dumps({"type": "train", "step": 2 * s, "tokens": 6000 * s, "elapsed": 0.1 * s,
                                "lr": 1e-4, "loss": 3.0, "mlm_loss": 2.5, "mlm_acc": 0.4,
                                "nsp_loss": 0.6, "nsp_acc": 0.7, "sop_acc": None, "grad_norm": 1.0,
                                "tokens_per_s": 1e4}) + "\n")


def parse_args(argv: list[str] | None):
    from zhbert import argtypes

    ap = common.Parser("monitor_poll", __doc__)
    ap.add_argument("--records", type=argtypes.count(1), default=50_000)
    ap.add_argument("--polls", type=argtypes.count(1), default=20)
    return ap.parse_args(argv)


@common.entry("monitor_poll")
def main(argv: list[str] | None = None) -> int:
    from starlette.testclient import TestClient

    from zhbert.monitor.server import create_app
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "runs" / "big"
        write_history(run, args.records)
        client = TestClient(create_app([run.parent]))
        client.get("/api/runs")  # the first poll reads the whole file once
        t = time.perf_counter()
        for _ in range(args.polls):
            assert client.get("/api/runs").json()["runs"][0]["step"] == 2 * args.records
        ms = (time.perf_counter() - t) / args.polls * 1000
        size = (run / "history.jsonl").stat().st_size / 1e6
    line = (f"{args.records:,} train records ({size:.1f} MB): {ms:.1f} ms per /api/runs poll "
            f"(mean of {args.polls}; load {' '.join(f'{v:.2f}' for v in os.getloadavg())})")
    common.finish("monitor_poll", common.machine(), [line],
                  {"args": vars(args), "history_mb": size, "ms_per_poll": ms})
    return 0


if __name__ == "__main__":
    sys.exit(main())
