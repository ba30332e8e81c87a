"""Where a training step's time goes: torch.profiler over zhbert's (or HF's) step.

    python -m benchmarks.profile_step --config seed [--precision auto|fp32|bf16]
        [--side zhbert|reference] [--steps 3] [--threads N] [--rows 25]

The step is the one ``benchmarks.train_throughput`` times (the same build, batch and
optimizer), profiled for ``--steps`` steps after ``--warmup`` steps. Prints the ops by
self CPU time, then the same time grouped into kinds (matmul, attention, elementwise,
optimizer, ...) with each kind's share of the step, and writes both to
``benchmarks/out/profile_step-*.json``. Profile before optimising: the grouped view
says what a change could buy at most.
"""

from __future__ import annotations

import sys
import time

import torch

from benchmarks import common, train_throughput as tt

# op-name substring -> kind; the first match wins (order matters: "addmm" before "add",
# "log_softmax" before "softmax")
KINDS = (
    ("matmul", ("mkldnn::_linear_pointwise", "aten::mm", "aten::addmm", "aten::bmm",
                "aten::baddbmm", "aten::matmul", "aten::linear")),
    ("loss", ("cross_entropy", "nll_loss", "log_softmax")),  # before "softmax"
    ("attention", ("scaled_dot_product", "flash_attention", "_softmax", "softmax")),
    ("optimizer", ("_fused_adamw", "adamw", "_foreach", "clip_grad", "aten::norm",
                   "linalg_vector_norm")),
    ("rng", ("randint", "random_", "uniform_", "bernoulli")),
    ("layernorm", ("layer_norm",)),
    ("gelu", ("gelu",)),
    ("embedding", ("embedding",)),
    ("copy/cast", ("aten::copy_", "aten::to", "aten::_to_copy", "aten::clone", "aten::cat",
                   "aten::contiguous")),
    ("reduction", ("aten::sum", "aten::mean", "aten::argmax", "aten::all", "aten::max")),
    ("elementwise", ("aten::mul", "aten::add", "aten::sub", "aten::clamp", "aten::div",
                     "aten::masked_fill", "aten::where", "aten::tanh", "aten::fill_",
                     "aten::zero_", "aten::eq", "aten::ne")),
)


def kind_of(name: str) -> str:
    lowered = name.lower()
    for kind, needles in KINDS:
        if any(n.lower() in lowered for n in needles):
            return kind
    return "other"


def grouped(events) -> dict[str, float]:
    """Self CPU seconds per kind (self time: a parent op's children are not counted twice)."""
    out: dict[str, float] = {}
    for e in events:
        kind = kind_of(e.key)
        out[kind] = out.get(kind, 0.0) + e.self_cpu_time_total / 1e6
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


@common.entry("profile_step")
def main(argv: list[str] | None = None) -> int:
    from zhbert import argtypes

    p = common.Parser("profile_step", __doc__)
    p.add_argument("--config", choices=("tiny", "seed"), default="seed")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    p.add_argument("--side", choices=("zhbert", "reference"), default="zhbert")
    p.add_argument("--batch-size", type=argtypes.count(1), default=32)
    p.add_argument("--steps", type=argtypes.count(1), default=3, help="profiled steps")
    p.add_argument("--threads", type=argtypes.cores)
    p.add_argument("--rows", type=argtypes.count(1), default=25)
    p.add_argument("--warmup", type=argtypes.count(0), default=4,
                   help="steps before profiling (the first 2-3 still page-fault their memory in)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from zhbert.machine import tune_malloc

    tune_malloc()  # as zhbert train and the throughput benchmark do
    precision = tt.resolve(args.precision)
    step = tt.build(args.side, tt.model_config(args.config), None, False, precision)
    batches = [tt.make_batch(args.batch_size, s) for s in range(2)]
    for i in range(args.warmup):  # kernel selection; glibc's heap grows to the step's peak
        step(batches[i % 2])
    t = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for i in range(args.steps):
            step(batches[i % 2])
    wall = (time.perf_counter() - t) / args.steps
    events = prof.key_averages()
    print(common.machine_line(common.machine()))
    print(f"{args.side} {args.config} {precision}, batch {args.batch_size}x{tt.T}, "
          f"{args.steps} profiled steps, {wall:.3f} s a step (profiler on)")
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    kinds = grouped(events)
    total = sum(kinds.values())
    rows = [["kind", "s per step", "share"]]
    rows += [[k, f"{v / args.steps:.3f}", f"{100 * v / total:.1f}%"] for k, v in kinds.items()]
    print(common.table(rows))
    ops = [{"op": e.key, "calls": e.count, "self_cpu_s": e.self_cpu_time_total / 1e6}
           for e in sorted(events, key=lambda e: -e.self_cpu_time_total)]
    path = common.write_json(f"profile_step-{args.side}-{args.config}",
                             {"args": vars(args), "precision": precision, "step_s": wall,
                              "kinds_s": kinds, "ops": ops, "machine": common.machine()})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
