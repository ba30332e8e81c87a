"""The one script to run when a GPU is lent: the seed preset's real training speed.

    python -m benchmarks.gpu_check [--steps 60] [--precisions bf16,fp16] [--quick] [--work DIR | --keep]

For each precision it runs ``zhbert train`` (the real loop: loader workers, pinned
batches, the bf16 master-weight copy or fp16 with the GradScaler) with the seed
preset (hidden 512, 12 layers, batch 32 x 4, length 128) on a generated data
directory with the seed's vocabulary size, for ``--steps`` optimizer steps, and
reads the run's own history:

- tokens/s (all positions, padding included, as the seed's step count implies) and
  real tokens/s, from the elapsed time between log records, the first interval
  (warm-up: CUDA context, kernel selection) left out;
- the share of training time the loop spent waiting for the next batch
  (``data_wait`` in the history: time blocked in the loader / interval time);
- the seed study extrapolated: 100K steps at the measured steps/s, against the
  seed's 22.5 h on an RTX 3070 and the 30-minute goal (issue 22).

``--quick`` runs the tiny preset for a few steps on the CPU in fp32: a CPU dry run that
checks the script itself (tests/test_gpu_check.py), not a speed; every figure it prints is
labelled "CPU dry run, not a GPU figure". Without ``--quick`` and without a CUDA GPU
(torch.cuda.is_available() false) it says so in one line and exits 2 before any training.

Writes benchmarks/out/gpu_check-<time>.json and prints one line per precision. The data
and runs go to ``--work`` (kept) or a temporary folder, removed at the end unless ``--keep``.

Exit codes: 0 every precision ran; 1 a precision's training failed; 2 cannot run here
(no CUDA GPU without --quick, a bad option).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks import common

SEED_STEPS, SEED_HOURS, GOAL_MINUTES = 100_000, 22.5, 30.0
VOCAB = 10_000  # the seed study's vocabulary size (as benchmarks.train_throughput)


def make_data(path: Path, tokens: int, vocab: int = VOCAB, seed: int = 0) -> Path:
    """A data directory of Zipf-distributed 'sentences' in documents: the cost of a step
    does not depend on what the tokens say, only on their shapes."""
    from zhbert.datadir import SplitArrays, new_manifest, write_manifest, write_split
    from zhbert.vocab import SPECIAL_TOKENS, Vocab

    rng = np.random.default_rng(seed)
    chars = tuple(chr(0x4E00 + i) for i in range(vocab - len(SPECIAL_TOKENS)))
    v = Vocab(SPECIAL_TOKENS + chars)
    path.mkdir(parents=True, exist_ok=True)
    v.save(path / "vocab.txt")
    zipf = 1.0 / np.arange(1, len(chars) + 1)
    splits = {}
    for name, n in (("train", tokens), ("validation", max(20_000, tokens // 50))):
        lens = rng.integers(8, 60, n // 30 + 2)
        sents = np.concatenate([[0], np.cumsum(lens)])
        docs = np.concatenate([np.arange(0, len(lens), 10), [len(lens)]])
        toks = (rng.choice(len(chars), int(sents[-1]), p=zipf / zipf.sum()) + 5).astype(np.uint16)
        write_split(path, name, SplitArrays(toks, sents, docs, None))
        splits[name] = {"documents": len(docs) - 1, "sentences": len(lens), "tokens": len(toks)}
    write_manifest(path, new_manifest({"generated": "benchmarks.gpu_check"}, [], v, splits, False))
    return path


def train(data: Path, out: Path, config: str, precision: str, steps: int, log_every: int,
          extra: list[str]) -> subprocess.CompletedProcess:
    sets = [f"train.steps={steps}", f"train.precision={precision}", f"train.log_every={log_every}",
            f"train.eval_every={10 * steps}", f"train.checkpoint_every={10 * steps}",
            "data.eval_sequences=64", "train.warmup_steps=1", *extra]
    cmd = [sys.executable, "-m", "zhbert", "train", "--data", str(data), "--out", str(out),
           "--config", config, "--no-progress", "--force"] + sum((["--set", s] for s in sets), [])
    return subprocess.run(cmd, capture_output=True, text=True)


def speeds(history: Path) -> dict:
    """Steps/s, tokens/s and the data-wait share from the train records after the first."""
    from zhbert.history import iter_records

    records = list(iter_records(history))
    header = next(r for r in records if r["type"] == "header")
    train = [r for r in records if r["type"] == "train"]
    if len(train) < 2:
        raise common.BenchError(f"{history}: fewer than 2 train records; raise --steps")
    first, last = train[0], train[-1]
    steps, seconds = last["step"] - first["step"], last["elapsed"] - first["elapsed"]
    waits = [r["data_wait"] for r in train[1:] if r.get("data_wait") is not None]
    steps_s = steps / seconds
    return {"device": header["machine"], "precision": header["precision"],
            "precision_reason": header["precision_reason"], "steps_timed": steps,
            "seconds": round(seconds, 3), "steps_per_s": steps_s,
            "tokens_per_s": steps_s * header["tokens_per_step"],
            "real_tokens_per_s": (last["tokens"] - first["tokens"]) / seconds,
            "data_wait_share": sum(waits) / len(waits) if waits else None,
            "seed_study_minutes": SEED_STEPS / steps_s / 60}  # main: None for --quick


def line(r: dict, quick: bool = False) -> str:
    """One result's line; ``quick`` (a tiny check of the script) extrapolates nothing."""
    wait = "n/a" if r["data_wait_share"] is None else f"{r['data_wait_share']:.1%}"
    head = (f"{r['precision']:>4}: {r['tokens_per_s']:,.0f} tokens/s ({r['real_tokens_per_s']:,.0f} real), "
            f"{r['steps_per_s']:.2f} steps/s, waiting for data {wait}")
    if quick:
        return head + (" (CPU dry run, not a GPU figure; --quick: the tiny preset checks the "
                       "script; no seed-study extrapolation)")
    return (f"{head}; the seed's {SEED_STEPS:,} steps in {r['seed_study_minutes']:,.1f} min (seed: "
            f"{SEED_HOURS} h on an RTX 3070; goal < {GOAL_MINUTES:.0f} min: "
            f"{'met' if r['seed_study_minutes'] < GOAL_MINUTES else 'not met'})")


def parse_args(argv: list[str] | None):
    from zhbert import argtypes

    p = common.Parser("gpu_check", __doc__, epilog="exit 2: no CUDA GPU here (without --quick) "
                      "or a bad option; 1: a precision's training failed")
    p.add_argument("--steps", type=argtypes.count(2), default=60,
                   help="optimizer steps per precision (default 60; at least 2)")
    p.add_argument("--precisions", type=common.csv_of(_precision), default=["bf16", "fp16"],
                   help="comma-separated, of bf16, fp16, fp32 (default bf16,fp16)")
    p.add_argument("--quick", action="store_true",
                   help="CPU dry run: tiny preset, 6 steps, CPU, fp32; checks the script, no GPU figure")
    p.add_argument("--work", help="folder for the data and runs, kept (default: a temporary one, "
                   "removed at the end)")
    p.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    return p.parse_args(argv)


def _precision(text: str) -> str:
    if text not in ("bf16", "fp16", "fp32"):
        raise argparse.ArgumentTypeError(f"{text!r} is not one of bf16, fp16, fp32")
    return text


def require_gpu(quick: bool) -> None:
    """Without --quick (the CPU dry run), no CUDA GPU is a refusal before any training."""
    import torch

    if not quick and not torch.cuda.is_available():
        raise common.BenchError("no CUDA GPU here (torch.cuda.is_available() is false); this "
                                "benchmark times a GPU; --quick is a CPU dry run of the script")


def run_all(args, work: Path) -> tuple[list[dict], int]:
    config, steps, precisions, extra = "seed", args.steps, args.precisions, []
    if args.quick:
        config, steps, precisions = "tiny", 6, ["fp32"]
        extra = ["train.device=cpu", "train.batch_size=4", "data.max_len=32"]
    log_every = max(1, steps // 6)
    data = make_data(work / "data", tokens=200_000 if args.quick else 4_000_000)
    results = []
    for precision in precisions:
        done = train(data, work / f"run-{precision}", config, precision, steps, log_every, extra)
        if done.returncode:
            print(f"{precision}: zhbert train failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            continue
        results.append(speeds(work / f"run-{precision}" / "history.jsonl"))
        if args.quick:  # a tiny check of the script: no seed-study extrapolation, here either
            results[-1]["seed_study_minutes"] = None
            results[-1]["note"] = "CPU dry run, not a GPU figure"
        print(line(results[-1], args.quick), flush=True)
    payload = {"config": config, "steps": steps, "machine": common.machine(), "results": results,
               "cpu_dry_run": bool(args.quick)}
    print(f"wrote {common.write_json('gpu_check', payload)}")
    return results, 0 if len(results) == len(precisions) else 1


@common.entry("gpu_check")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_gpu(args.quick)
    temporary = args.work is None
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_check-"))
    try:
        return run_all(args, work)[1]
    finally:
        if temporary and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif temporary:
            print(f"kept the work folder {work}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
