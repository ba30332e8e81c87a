"""Training throughput: zhbert's step vs Hugging Face's BertForPreTraining, side by side.

    python -m benchmarks.train_throughput --config tiny|seed [--precision auto|fp32|bf16]
        [--quick] [--batch-size 32] [--steps N] [--rounds 3] [--compile] [--real-share 0.87]

Both models have the same shape and the same weights (HF loads zhbert's state_dict).
Each side runs a plain loop: zero_grad, forward with MLM + NSP labels, backward,
AdamW. zhbert gets its batch contract (full packed sequences, M = 20 masked slots
per row, the head only there; fused AdamW, gradient clipping and, in bf16, a bf16
copy of fp32 master weights, as zhbert.train does); HF gets the same
tokens with a (B, T) labels tensor (-100 off the masked slots), SDPA attention and
the default AdamW, as in the reference issue.

``--real-share S`` pads the rows as packing leaves them on real data (the built-in corpus:
0.87 of a `tiny` batch's positions are real tokens after its length switch): a random
share of the rows end early, at a uniform length from T/4, so that S of the positions are
real. Tokens/s then count real tokens on both sides (zhbert's layers skip the padding:
zhbert.unpadding; HF computes it); model FLOP/s count zhbert's per real token, HF's per
position.

glibc's malloc is tuned as ``zhbert train`` tunes it (``machine.tune_malloc``: no page
faults on activations every step). The reference runs in the same process and gains
from it too, so the ratio understates what a zhbert user gets over a plain HF loop.

The machine is shared, so the two sides run in alternating timed windows in one
process (warm-up excluded), each step timed, and the ratio of median-step
throughputs is what to read. Each side's peak RSS is
measured in a child process that builds only that side (--child). Ends with
``ratio: X.XX`` (zhbert tokens/s / reference tokens/s) and writes JSON to
benchmarks/out/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

from benchmarks import common

VOCAB, T, M = 10_000, 128, 20  # the seed study's vocabulary size and sequence shape


def model_config(name: str):
    from zhbert.model import preset

    return preset(name, VOCAB, max_predictions=M, max_position_embeddings=512)


def _lengths(B: int, real_share: float, g: torch.Generator) -> torch.Tensor:
    """Row lengths whose mean is ``real_share`` of T: a share q of the rows end at a uniform
    length in [T/4, T) (5/8 of T on average), the rest are full: q = (1 - S) * 8 / 3."""
    short = torch.rand(B, generator=g) < (1 - real_share) * 8 / 3
    return torch.where(short, torch.randint(T // 4, T, (B,), generator=g), torch.full((B,), T))


def make_batch(B: int, seed: int, vocab: int = VOCAB, real_share: float = 1.0) -> dict[str, torch.Tensor]:
    """A [CLS] A [SEP] B [SEP] batch in zhbert's contract, plus ``labels`` (B, T) for HF;
    full-length rows, or padded to ``real_share`` of the positions (``_lengths``). 80/10/10
    masking does not change the cost, so every slot is [MASK]."""
    g = torch.Generator().manual_seed(seed)
    n = _lengths(B, real_share, g) if real_share < 1 else torch.full((B,), T)
    rows, real = torch.arange(B), torch.arange(T)[None, :] < n[:, None]
    ids = torch.randint(5, vocab, (B, T), generator=g).masked_fill(~real, 0)
    cut = (n // 4 + (torch.rand(B, generator=g) * (n // 2)).long()).clamp(max=n - 2)
    ids[:, 0], ids[rows, n - 1], ids[rows, cut] = 2, 3, 3
    types = ((torch.arange(T) > cut[:, None]) & real).long()
    # M distinct positions per row, never [CLS]/[SEP]/padding; sorted like zhbert.data's
    score = torch.rand(B, T, generator=g).masked_fill(~real, 2.0)
    score[:, 0] = 2.0
    score[rows, n - 1] = score[rows, cut] = 2.0
    positions = score.argsort(1)[:, :M].sort(1).values
    mlm_labels = torch.gather(ids, 1, positions)
    ids.scatter_(1, positions, 4)  # [MASK]
    labels = torch.full((B, T), -100).scatter_(1, positions, mlm_labels)
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": real,
            "mlm_positions": positions, "mlm_labels": mlm_labels,
            "nsp_labels": torch.randint(0, 2, (B,), generator=g), "labels": labels}


def build(side: str, cfg, state: dict | None, compile_: bool, precision: str):
    """A step function for one side: zero_grad, forward with MLM + NSP labels, backward,
    optimizer step. zhbert's is what zhbert.train does: in bf16 a bf16 copy of fp32
    master weights trains (precision.Bf16Weights), and gradients are clipped (a norm
    over all parameters and one finiteness check per step)."""
    from zhbert.precision import Bf16Weights, autocast_context

    if side == "zhbert":
        from zhbert.model import BertForPretraining

        model = BertForPretraining(cfg).train()
        if state is not None:
            model.load_state_dict(state)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        bf16 = Bf16Weights(model) if precision == "bf16" else None
        net = bf16.module if bf16 else model
        forward = (lambda b: net(b).loss)
    else:
        from transformers import BertForPreTraining

        model = BertForPreTraining._from_config(cfg.to_hf_config(), attn_implementation="sdpa").train()
        if state is not None:
            model.load_state_dict(state)
        opt, bf16 = torch.optim.AdamW(model.parameters(), lr=1e-4), None
        forward = (lambda b: model(input_ids=b["input_ids"], token_type_ids=b["token_type_ids"],
                                   attention_mask=b["attention_mask"].long(), labels=b["labels"],
                                   next_sentence_label=b["nsp_labels"]).loss)
    if compile_:
        forward = torch.compile(forward)
    use_autocast = precision if bf16 is None else "fp32"

    def step(batch):
        opt.zero_grad(set_to_none=True)
        with autocast_context(use_autocast, "cpu"):
            loss = forward(batch)
        loss.backward()
        if side == "zhbert":
            if bf16 is not None:
                bf16.grads_to_master()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            assert bool(torch.isfinite(norm))
        opt.step()
        if bf16 is not None:
            bf16.sync_from_master()
        return loss

    return step


def timed(step, batches: list, n: int, offset: int = 0) -> list[float]:
    """Seconds of each of ``n`` steps (the step returns a CPU loss: nothing is pending)."""
    times = []
    for i in range(n):
        t = time.perf_counter()
        step(batches[(offset + i) % len(batches)])
        times.append(time.perf_counter() - t)
    return times


def child_rss(args, side: str) -> float | None:
    """Peak RSS (MB) of a fresh process that builds and steps only ``side``."""
    return common.child_peak_rss_mb(
        "benchmarks.train_throughput",
        ["--child", side, "--config", args.config, "--batch-size", str(args.batch_size),
         "--precision", args.precision] + (["--compile"] if args.compile and side == "zhbert" else []),
        side)


def resolve(precision: str) -> str:
    from zhbert.machine import detect_capabilities
    from zhbert.precision import resolve_precision

    return resolve_precision(precision, detect_capabilities("cpu")).precision


def run_child(args) -> int:
    precision = resolve(args.precision)
    step = build(args.child, model_config(args.config), None, args.compile, precision)
    batch = make_batch(args.batch_size, 0)
    for _ in range(2):
        step(batch)
    print(json.dumps({"peak_rss_mb": round(common.peak_rss_mb(), 1)}))
    return 0


def measure(args, cfg, precision: str) -> dict:
    """Warm up both sides, then ``rounds`` alternating windows of ``steps`` steps each."""
    from zhbert.model import BertForPretraining

    torch.manual_seed(0)
    state = BertForPretraining(cfg).state_dict()
    sides = {}
    for side in ("zhbert", "reference"):
        sides[side] = build(side, cfg, state, args.compile and side == "zhbert", precision)
    batches = [make_batch(args.batch_size, s, real_share=args.real_share) for s in range(4)]
    warm = {}
    for side, step in sides.items():  # the first zhbert step includes compile time when compiled
        t = time.perf_counter()
        step(batches[0])
        warm[side] = time.perf_counter() - t
        timed(step, batches, args.warmup - 1, 1)
    secs = {side: [] for side in sides}
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]  # neither side always goes first
        for side in order:
            secs[side].extend(timed(sides[side], batches, args.steps, r))
    return {"first_step_s": warm, "step_s": secs,
            "real_tokens": statistics.mean(int(b["attention_mask"].sum()) for b in batches)}


def ratio_lines(summary: dict, step_s: dict, tokens: int) -> tuple[dict, list[str]]:
    """The headline ratio from median steps, and the one from mean (total-time) throughput,
    printed as common.ratio_lines says (both, with a warning, where load moved them apart)."""
    median = summary["zhbert"]["tokens_per_s"] / summary["reference"]["tokens_per_s"]
    mean = summary["zhbert"]["mean_tokens_per_s"] / summary["reference"]["mean_tokens_per_s"]
    spread = "; ".join(f"{side} {tokens / min(s):,.0f}..{tokens / max(s):,.0f} tokens/s"
                       for side, s in step_s.items())
    moved, lines = common.ratio_lines({"": (median, mean)}, spread, "steps")
    return {"ratio": median, "mean_ratio": mean, "load_moved_steps": moved[""]}, lines


def report(args, cfg, precision: str, result: dict, info: dict, peak: dict, rss: dict) -> dict:
    from zhbert.accounting import flops_per_token

    tokens = result.get("real_tokens", args.batch_size * T)  # real tokens per step
    share = tokens / (args.batch_size * T)
    fpt_ours = flops_per_token(cfg, T, M / T, (M + cfg.has_nsp) / T)  # last layer at M (+ [CLS])
    # HF computes the MLM head at every position, and the padding: count what each side does
    fpt_ref = flops_per_token(cfg, T, 1.0) / share
    rows = [["side", "precision", "tokens/s", "mean tok/s", "best..worst step", "model GFLOP/s",
             "% peak", "peak RSS MB", "first step s"]]
    summary = {}
    for side, fpt in (("zhbert", fpt_ours), ("reference", fpt_ref)):
        s = result["step_s"][side]
        # the median step is the headline: other engineers' jobs make some steps much slower
        tps = tokens / statistics.median(s)
        gflops = tps * fpt / 1e9
        summary[side] = {"tokens_per_s": tps, "mean_tokens_per_s": tokens * len(s) / sum(s),
                         "model_gflops": gflops, "peak_fraction": gflops / peak[precision],
                         "flops_per_token": fpt, "peak_rss_mb": rss.get(side),
                         "first_step_s": result["first_step_s"][side]}
        rows.append([side, precision, f"{tps:,.0f}", f"{summary[side]['mean_tokens_per_s']:,.0f}",
                     f"{tokens / min(s):,.0f}..{tokens / max(s):,.0f}", f"{gflops:.1f}",
                     f"{100 * gflops / peak[precision]:.0f}%", "-" if rss.get(side) is None else f"{rss[side]:.0f}",
                     f"{result['first_step_s'][side]:.2f}"])
    ratios, lines = ratio_lines(summary, result["step_s"], tokens)
    print(common.machine_line(info))
    print(f"config {args.config} (hidden {cfg.hidden_size}, {cfg.num_layers} layers, {cfg.num_heads} "
          f"heads, FFN {cfg.intermediate_size}, vocab {cfg.vocab_size}), batch {args.batch_size}x{T}, "
          f"M={M}, {args.rounds} rounds x {args.steps} steps per side, compile={args.compile}, "
          f"real tokens {share:.1%} of the positions")
    print("matmul peak (1024^3, best of before and after the run): " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in peak.items()))
    print(common.table(rows))
    print("tokens/s from the median step; mean tok/s from the total time")
    print("model FLOP/s count what each side computes (zhbert: MLM head at M slots; HF: at all T)")
    for line in lines:
        print(line)
    return {"summary": summary, **ratios}


def parse_args(argv: list[str] | None):
    from zhbert import argtypes

    p = common.Parser("train_throughput", __doc__)
    p.add_argument("--config", choices=("tiny", "seed"), default="tiny")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    p.add_argument("--batch-size", type=argtypes.count(1), default=32)
    p.add_argument("--steps", type=argtypes.count(1),
                   help="steps per timed window (default 5; --quick: 3 tiny, 1 seed)")
    p.add_argument("--rounds", type=argtypes.count(1), default=3)
    p.add_argument("--warmup", type=argtypes.count(1), default=2, help="untimed steps first (at least 1)")
    p.add_argument("--quick", action="store_true", help="few steps: under 10 minutes for seed")
    p.add_argument("--compile", action="store_true", help="torch.compile zhbert's forward")
    p.add_argument("--threads", type=argtypes.cores, help="torch threads (default: torch's)")
    p.add_argument("--no-rss", action="store_true", help="skip the per-side RSS child processes")
    p.add_argument("--real-share", type=argtypes.number(0.625, 1.0), default=1.0,
                   help="share of the positions that are real tokens, the rest padding (default 1: full rows)")
    p.add_argument("--child", choices=("zhbert", "reference"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


@common.entry("train_throughput")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        if args.child == "zhbert":  # each side's memory as its user gets it
            from zhbert.machine import tune_malloc
            tune_malloc()
        return run_child(args)
    if args.steps is None:
        args.steps = (1 if args.config == "seed" else 3) if args.quick else 5
    if args.quick:
        args.warmup = 1
    precision = resolve(args.precision)
    # as zhbert.train does; the reference shares this process, so it gains from it too
    from zhbert.machine import tune_malloc
    tune_malloc()
    info = common.machine()
    from zhbert.machine import detect_capabilities

    native = detect_capabilities("cpu").cpu_native_bf16 or precision == "bf16"
    peak = common.peaks(native)
    cfg = model_config(args.config)
    result = measure(args, cfg, precision)
    # the peak again after the run, the better of the two: one slow timing on a shared
    # machine would otherwise put a model above "100% of peak"
    after = common.peaks(native)
    peak = {k: max(v, after[k]) for k, v in peak.items()}
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    rss = {} if args.no_rss else {s: child_rss(args, s) for s in ("zhbert", "reference")}
    out = report(args, cfg, precision, result, info, peak, rss)
    path = common.write_json(f"train_throughput-{args.config}",
                             {"args": vars(args), "machine": info, "precision": precision,
                              "matmul_peak_gflops": peak, "raw": result, **out,
                              "process_peak_rss_mb": common.peak_rss_mb()})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
