"""Two trainings on one machine: does the second cost about its share, or collapse both?

    python -m benchmarks.shared_machine [--data DIR] [--seconds 75] [--rounds 1] [--stagger S]
        [--scenarios ...]

Each scenario starts one or two `zhbert train` processes (the tiny preset at length 64
on the built-in corpus, no evaluation or checkpoint inside the window), lets them train
for ``--seconds`` and stops them with SIGTERM. From the moment every one has logged a
step (and ``--warm`` seconds have passed) to the end, it reads each one's real
(non-padding) tokens from its history and its CPU seconds from /proc: tokens per wall
second, cores used (CPU seconds per wall second: spinning OpenMP threads use CPU and
train nothing) and tokens per CPU second.
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
              "train.checkpoint_every=1000000", "train.log_every=1"]
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


def sample(pid: int, history: Path) -> tuple[float, int, float]:
    """(now, real tokens trained so far as the last train record says, CPU seconds the
    process and its threads have used)."""
    tokens = 0
    if history.exists():
        for line in history.read_text().splitlines():
            if '"type": "train"' in line:
                try:
                    tokens = json.loads(line)["tokens"]
                except ValueError:  # a line being written
                    pass
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return time.monotonic(), tokens, cpu


def scenario(behaviour: str, count: int, data: Path, seconds: float, warm: float,
             work: Path, stagger: float = 0.0) -> dict:
    """Start ``count`` trainings; from the moment all have logged and ``warm`` seconds
    have passed until ``seconds`` after the start: each one's real tokens per wall
    second, the cores it used (CPU seconds per wall second) and tokens per CPU second.
    With ``stagger`` the i-th training starts i x stagger seconds after the first (the
    window opens once the last has logged): did the first give cores up?"""
    cores = len(os.sched_getaffinity(0))
    registry = work / f"registry-{behaviour}-{count}"
    procs, runs = [], []
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    t0 = time.monotonic()
    for i in range(count):
        time.sleep(max(0.0, t0 + i * stagger - time.monotonic()))
        run = work / f"{behaviour}-{count}-{i}"
        cmd, env = train_command(behaviour, data, run, cores)
        env["ZHBERT_TRAINERS_DIR"] = str(registry)
        log = open(work / f"{run.name}.log", "w")
        procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
        runs.append(run / "history.jsonl")
    first = None
    while time.monotonic() < t0 + seconds and first is None:
        time.sleep(0.5)
        now = [sample(p.pid, h) for (p, _), h in zip(procs, runs)]
        if (time.monotonic() >= t0 + (count - 1) * stagger + warm
                and all(tok > 0 for _, tok, _ in now)):
            first = now
    time.sleep(max(0.0, t0 + seconds - time.monotonic()))
    last = [sample(p.pid, h) for (p, _), h in zip(procs, runs)]
    load_during = os.getloadavg()
    for p, log in procs:
        p.send_signal(signal.SIGTERM)
        p.wait()
        log.close()
    each = []
    for a, b in zip(first or last, last):
        wall, tokens, cpu = b[0] - a[0], b[1] - a[1], b[2] - a[2]
        each.append({"tokens_per_s": tokens / wall if tokens and wall else None,
                     "cores_used": cpu / wall if wall else None,
                     "tokens_per_cpu_s": tokens / cpu if tokens and cpu else None,
                     "window_s": wall})
    rates = [e["tokens_per_s"] for e in each]
    return {"behaviour": behaviour, "count": count, "stagger": stagger, "each": each,
            "total_tokens_per_s": sum(rates) if None not in rates else None,
            "loadavg_before": load_before, "loadavg_during": load_during}


def _fmt(xs, spec=",.0f") -> str:
    return ", ".join("-" if x is None else format(x, spec) for x in xs)


def _line(name: str, r: dict) -> str:
    total = f"{r['total_tokens_per_s']:,.0f}" if r["total_tokens_per_s"] else "-"
    e = r["each"]
    return (f"{name:<14} each {_fmt([x['tokens_per_s'] for x in e]):<14} together {total:>7} "
            f"real tokens/s; cores used {_fmt([x['cores_used'] for x in e], '.2f')}; tokens "
            f"per CPU s {_fmt([x['tokens_per_cpu_s'] for x in e])}  (load "
            f"{r['loadavg_before'][0]:.2f} before, {r['loadavg_during'][0]:.2f} at the end)")


def _median_line(name: str, runs: list[dict]) -> str:
    def med(xs, spec=",.0f"):
        xs = [x for x in xs if x is not None]
        return format(statistics.median(xs), spec) if xs else "-"

    def of(key, spec=",.0f"):
        return med([e[key] for r in runs for e in r["each"]], spec)
    return (f"  {name:<14} each {of('tokens_per_s'):>7}  together "
            f"{med([r['total_tokens_per_s'] for r in runs]):>7}  tokens per CPU s "
            f"{of('tokens_per_cpu_s'):>7}  cores used {of('cores_used', '.2f')} each")


def scenario_name(text: str) -> str:
    """argparse type of a scenario: BEHAVIOUR-COUNT, COUNT 1 or more."""
    behaviour, _, count = text.rpartition("-")
    if behaviour not in BEHAVIOURS or not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not BEHAVIOUR-COUNT with BEHAVIOUR one of "
                                         f"{', '.join(BEHAVIOURS)} and COUNT 1 or more")
    return text


def parse_args(argv=None):
    from zhbert import argtypes

    ap = common.Parser("shared_machine", __doc__)
    ap.add_argument("--data", help="a data directory (default: benchmarks/out/shared_machine-data, "
                                   f"{common.DATA_HELP})")
    ap.add_argument("--seconds", type=argtypes.positive, default=75.0,
                    help="wall seconds each scenario trains")
    ap.add_argument("--warm", type=argtypes.positive, default=20.0,
                    help="wall seconds after the start before the window opens (at least)")
    ap.add_argument("--stagger", type=argtypes.non_negative, default=0.0,
                    help="seconds between the starts of a scenario's trainings (default together)")
    ap.add_argument("--rounds", type=argtypes.count(1), default=1,
                    help="times the scenario list runs, in turn")
    ap.add_argument("--scenarios", nargs="+", type=scenario_name,
                    default=["new-1", "old-1", "old-2", "new-2", "share-spin-2", "all-passive-2"])
    args = ap.parse_args(argv)
    if args.warm >= args.seconds:
        ap.error(f"--warm {args.warm:g} leaves no window in --seconds {args.seconds:g}")
    args.data = Path(args.data) if args.data else common.OUT / "shared_machine-data"
    common.check_data_dir(args.data)
    return args


@common.entry("shared_machine")
def main(argv=None) -> int:
    args = parse_args(argv)
    data = args.data
    if not (data / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "zhbert", "prepare", "builtin", "--out", str(data),
                        "--force"], check=True)
    info = common.machine()
    print(common.machine_line(info))
    results = []
    with tempfile.TemporaryDirectory(prefix="zhbert-shared-") as tmp:
        for round_ in range(args.rounds):
            for name in args.scenarios:
                behaviour, count = name.rsplit("-", 1)
                r = scenario(behaviour, int(count), data, args.seconds, args.warm,
                             Path(tmp) / str(round_), args.stagger)
                results.append({"name": name, "round": round_, **r})
                print(_line(name, r), flush=True)
    if args.rounds > 1:
        print("medians over the rounds, real tokens/s:")
        for name in args.scenarios:
            print(_median_line(name, [r for r in results if r["name"] == name]))
    out = common.write_json("shared_machine", {"machine": info, "seconds": args.seconds,
                                               "warm": args.warm, "stagger": args.stagger,
                                               "results": results})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
