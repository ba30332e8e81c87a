"""The MLM loss on its own: ``zhbert.kernels.cross_entropy`` against
``F.cross_entropy(logits.float(), ignore_index=-100)``, forward + backward.

    python -m benchmarks.cross_entropy [--threads 1] [--repeats 40] [--confident 0.4]

Logits are random with a share of rows (``--confident``) whose label is far ahead
(p(label) > 0.5, as late in training), and the last 50 rows are ignored (-100), as the
padding rows of ``model.mlm_rows``. Shapes: the throughput benchmark's `tiny` head
(640, 10000) in bf16 and a demo step at length 64 (1280, 5036) in bf16 and fp32. Prints the median
milliseconds of each and writes JSON to benchmarks/out/.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
import torch.nn.functional as F

from benchmarks import common

CASES = ((640, 10000, torch.bfloat16), (1280, 5036, torch.bfloat16), (1280, 5036, torch.float32))


def logits_and_labels(n: int, v: int, dtype: torch.dtype, confident: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, v, generator=g) * 3
    labels = torch.randint(0, v, (n,), generator=g)
    ahead = torch.rand(n, generator=g) < confident
    x[ahead, labels[ahead]] += 25
    labels[-50:] = -100
    return x.to(dtype), labels


def median_ms(loss_fn, x: torch.Tensor, labels: torch.Tensor, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        leaf = x.clone().requires_grad_()
        t = time.perf_counter()
        loss_fn(leaf, labels).backward()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


@common.entry("cross_entropy")
def main(argv: list[str] | None = None) -> int:
    from zhbert import argtypes

    p = common.Parser("cross_entropy", __doc__)
    p.add_argument("--threads", type=argtypes.cores)
    p.add_argument("--repeats", type=argtypes.count(1), default=40)
    p.add_argument("--confident", type=argtypes.probability, default=0.4)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from zhbert.kernels import cross_entropy

    def reference(x, y):
        return F.cross_entropy(x.float(), y, ignore_index=-100)

    rows = [["logits", "dtype", "F.cross_entropy ms", "zhbert ms"]]
    results = []
    for n, v, dtype in CASES:
        x, labels = logits_and_labels(n, v, dtype, args.confident)
        ms = {"reference": median_ms(reference, x, labels, args.repeats),
              "zhbert": median_ms(cross_entropy, x, labels, args.repeats)}
        results.append({"shape": [n, v], "dtype": str(dtype).split(".")[-1], "ms": ms})
        rows.append([f"({n}, {v})", results[-1]["dtype"], f"{ms['reference']:.2f}", f"{ms['zhbert']:.2f}"])
    common.finish("cross_entropy", common.machine(), [common.table(rows)],
                  {"args": vars(args), "threads": torch.get_num_threads(), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
