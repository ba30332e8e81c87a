"""The training step's MLM accuracy on its own: ``hits.top1_hits`` against
``hits.top1(logits) == labels`` (ATen's max with indices in bf16, argmax in fp32).

    python -m benchmarks.accuracy_top1 [--threads 2] [--repeats 40] [--hits 0.4]

Random logits; a share of rows (``--hits``) labelled with their own argmax, as a model at
40% accuracy. Shapes: the throughput benchmark's `tiny` head (640, 10000) and the demo's
vocabulary (640, 5036), bf16 and fp32. Checks that both give the same hits, prints the
median milliseconds of each and writes JSON to benchmarks/out/.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import torch

from benchmarks import common
from zhbert.hits import top1, top1_hits

CASES = ((640, 10000), (640, 5036))


def median_ms(fn, repeats: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


@common.entry("accuracy_top1")
def main(argv: list[str] | None = None) -> int:
    from zhbert import argtypes

    p = common.Parser("accuracy_top1", __doc__)
    p.add_argument("--threads", type=argtypes.cores, default=min(2, os.cpu_count() or 1))
    p.add_argument("--repeats", type=argtypes.count(1), default=40)
    p.add_argument("--hits", type=argtypes.probability, default=0.4)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [["logits", "dtype", "top1 == labels ms", "top1_hits ms"]]
    out = []
    for n, v in CASES:
        for dtype in (torch.bfloat16, torch.float32):
            g = torch.Generator().manual_seed(0)
            x = torch.randn(n, v, generator=g).to(dtype)
            labels = torch.randint(0, v, (n,), generator=g)
            k = int(args.hits * n)
            labels[:k] = x[:k].float().argmax(-1)
            assert torch.equal(top1_hits(x, labels), top1(x) == labels)
            old = median_ms(lambda: top1(x) == labels, args.repeats)
            new = median_ms(lambda: top1_hits(x, labels), args.repeats)
            rows.append([f"({n}, {v})", str(dtype).split(".")[1], f"{old:.2f}", f"{new:.2f}"])
            out.append({"shape": [n, v], "dtype": str(dtype), "top1_ms": old, "top1_hits_ms": new})
    # common.finish: the machine line printed and the one in the JSON are one reading
    common.finish("accuracy_top1", common.machine(), [common.table(rows)],
                  {"args": vars(args), "cases": out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
