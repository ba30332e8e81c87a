"""Two trainings on one machine: does the second cost about its share, or collapse both?

    python -m benchmarks.shared_machine [--data DIR] [--seconds 75] [--rounds 1] [--scenarios ...]

Each scenario starts one or two `zhbert train` processes (the tiny preset at length 64
on the built-in corpus, no evaluation or checkpoint inside the window), lets them train
for ``--seconds``, stops them with SIGTERM and reads each one's real (non-padding)
tokens per second from its history, the first ``--warm`` seconds of training left out.
With ``--rounds R`` the scenario list runs R times in turn (the load of a shared machine
drifts; each scenario's median over the rounds is reported).
Scenarios are named BEHAVIOUR-COUNT:

  new   zhbert's default: each training takes its share of the cores (zhbert.threads)
        and OpenMP threads sleep when they wait (OMP_WAIT_POLICY=PASSIVE)
  old   what zhbert did before: torch's default, one thread per core each, and libgomp's
        default wait (spin, then sleep): torch is imported before zhbert can set a policy
  share-spin   the share of the cores, libgomp's default wait
  all-passive  every core each (--threads CORES), OMP_WAIT_POLICY=PASSIVE

The trainings register in a directory of this benchmark's own, so trainings elsewhere on
the machine change the load, not the shares. Writes JSON to benchmarks/out/ and prints
a table. The machine is shared: the load average is printed with each scenario.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common

BEHAVIOURS = ("new", "old", "share-spin", "all-passive")
TRAIN_SETS = ["data.warmup_len=0", "train.steps=1000000", "train.eval_every=1000000",
              "train.checkpoint_every=1000000", "train.log_every=2"]
# torch (and libgomp) loaded before zhbert.train runs quiet_openmp_waits: the old wait
TORCH_FIRST = "import sys, torch; from zhbert.cli import main; sys.exit(main(sys.argv[1:]))"


def train_command(behaviour: str, data: Path, run: Path, cores: int) -> tuple[list[str], dict]:
    """The command line and environment of one training of ``behaviour``."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    argv = ["train", "--data", str(data), "--out", str(run), "--config", "tiny", "--force",
            "--no-progress", *sum((["--set", s] for s in TRAIN_SETS), [])]
    if behaviour in ("old", "all-passive"):
        argv += ["--threads", str(cores)]
    if behaviour == "all-passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    head = ([sys.executable, "-c", TORCH_FIRST] if behaviour in ("old", "share-spin")
            else [sys.executable, "-m", "zhbert"])
    return head + argv, env


def throughput(history: Path, warm: float) -> dict:
    """Real tokens/s over the train records after ``warm`` seconds of training, and the
    thread counts the machine line of the header names."""
    recs = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
    train = [r for r in recs if r.get("type") == "train" and r["elapsed"] >= warm]
    if len(train) < 2:
        return {"tokens_per_s": None, "steps": len(train)}
    first, last = train[0], train[-1]
    return {"tokens_per_s": (last["tokens"] - first["tokens"]) / (last["elapsed"] - first["elapsed"]),
            "steps": last["step"] - first["step"], "seconds": last["elapsed"] - first["elapsed"]}


def scenario(behaviour: str, count: int, data: Path, seconds: float, warm: float,
             work: Path) -> dict:
    cores = len(os.sched_getaffinity(0))
    registry = work / f"registry-{behaviour}-{count}"
    procs, runs = [], []
    load_before = os.getloadavg()
    work.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        run = work / f"{behaviour}-{count}-{i}"
        cmd, env = train_command(behaviour, data, run, cores)
        env["ZHBERT_TRAINERS_DIR"] = str(registry)
        log = open(work / f"{run.name}.log", "w")
        procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
        runs.append(run)
    time.sleep(seconds)
    load_during = os.getloadavg()
    for p, _ in procs:
        p.send_signal(signal.SIGTERM)
    for p, log in procs:
        p.wait()
        log.close()
    each = [throughput(r / "history.jsonl", warm) for r in runs]
    rates = [e["tokens_per_s"] for e in each]
    total = sum(rates) if None not in rates else None
    return {"behaviour": behaviour, "count": count, "each": each, "total_tokens_per_s": total,
            "loadavg_before": load_before, "loadavg_during": load_during}


def _line(name: str, r: dict) -> str:
    rates = ", ".join(f"{e['tokens_per_s']:,.0f}" if e["tokens_per_s"] else "-" for e in r["each"])
    total = f"{r['total_tokens_per_s']:,.0f}" if r["total_tokens_per_s"] else "-"
    return (f"{name:<16} each {rates:<16} together {total:>8} real tokens/s  "
            f"(load {r['loadavg_before'][0]:.2f} before, {r['loadavg_during'][0]:.2f} at the end)")


def _median_line(name: str, runs: list[dict]) -> str:
    def med(xs):
        xs = [x for x in xs if x is not None]
        return f"{statistics.median(xs):,.0f}" if xs else "-"
    each = med([e["tokens_per_s"] for r in runs for e in r["each"]])
    return f"  {name:<16} each {each:>8}  together {med([r['total_tokens_per_s'] for r in runs]):>8}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="a data directory (default: the built-in corpus, prepared "
                                   "into benchmarks/out/shared_machine-data)")
    ap.add_argument("--seconds", type=float, default=75.0, help="wall seconds each scenario trains")
    ap.add_argument("--warm", type=float, default=10.0, help="training seconds left out at the start")
    ap.add_argument("--rounds", type=int, default=1, help="times the scenario list runs, in turn")
    ap.add_argument("--scenarios", nargs="+",
                    default=["new-1", "old-1", "old-2", "new-2", "share-spin-2", "all-passive-2"])
    args = ap.parse_args(argv)
    data = Path(args.data) if args.data else common.OUT / "shared_machine-data"
    if not (data / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "zhbert", "prepare", "builtin", "--out", str(data),
                        "--force"], check=True)
    info = common.machine()
    print(common.machine_line(info))
    results = []
    for name in args.scenarios:
        if name.rsplit("-", 1)[0] not in BEHAVIOURS:
            ap.error(f"unknown behaviour in {name!r}; choose from {BEHAVIOURS}")
    with tempfile.TemporaryDirectory(prefix="zhbert-shared-") as tmp:
        for round_ in range(args.rounds):
            for name in args.scenarios:
                behaviour, count = name.rsplit("-", 1)
                r = scenario(behaviour, int(count), data, args.seconds, args.warm,
                             Path(tmp) / str(round_))
                results.append({"name": name, "round": round_, **r})
                print(_line(name, r), flush=True)
    if args.rounds > 1:
        print("medians over the rounds, real tokens/s:")
        for name in args.scenarios:
            print(_median_line(name, [r for r in results if r["name"] == name]))
    common.OUT.mkdir(parents=True, exist_ok=True)
    out = common.OUT / f"shared_machine-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"machine": info, "seconds": args.seconds, "warm": args.warm,
                               "results": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
