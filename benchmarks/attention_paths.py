"""Attention on the CPU: SDPA against the written-out softmax(q k^T) v, forward + backward
(training) and forward only, bf16 and fp32, at the shapes zhbert's presets train.

    python -m benchmarks.attention_paths [--threads N] [--reps 10]

``zhbert.model.written_out_attention`` picks the path from what this measured; rerun it on
a new kind of machine (the choice was measured on an AMD EPYC with AVX512-BF16 only).
Prints a table (median of --reps, ms) and writes benchmarks/out/attention_paths-*.json.
"""

from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F

from benchmarks import common
from zhbert.model import ModelConfig, SelfAttention

# (B, H, T): tiny's length warm-up (256 x 16), tiny (64 x 64), the throughput benchmark's
# tiny and seed batches (32 x 128, 4 and 8 heads), a long-sequence case
SHAPES = ((256, 4, 16), (128, 4, 32), (64, 4, 64), (32, 4, 128), (32, 8, 128), (8, 12, 512))
D = 64


def written_out(heads: int):
    """zhbert's own written-out path (``SelfAttention.attend_written_out``, no dropout),
    built once per shape: its projection weights are not part of what is timed."""
    cfg = ModelConfig(vocab_size=8, hidden_size=heads * D, num_heads=heads, attention_dropout=0.0)
    return SelfAttention(cfg).attend_written_out


def sdpa(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def timed(fn, shape, dtype, padded: bool, train: bool, reps: int) -> float:
    B, H, T = shape
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, T, D, generator=g, dtype=dtype).requires_grad_(train)
               for _ in range(3))
    mask = None
    if padded:  # the last quarter of every sequence is padding
        mask = torch.ones(B, 1, 1, T, dtype=torch.bool)
        mask[..., 3 * T // 4:] = False
    grad = torch.randn(B, H, T, D, generator=g, dtype=dtype)
    times = []
    for i in range(reps + 3):  # 3 untimed: first-touch of the buffers
        t = time.perf_counter()
        if train:
            fn(q, k, v, mask).backward(grad)
        else:
            with torch.no_grad():
                fn(q, k, v, mask)
        if i >= 3:
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2] * 1e3


@common.entry("attention_paths")
def main(argv=None) -> int:
    from zhbert import argtypes

    p = common.Parser("attention_paths", __doc__)
    p.add_argument("--threads", type=argtypes.cores)
    p.add_argument("--reps", type=argtypes.count(1), default=10, help="timed repetitions (after 3 untimed)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = common.machine()
    print(common.machine_line(info))
    rows, out = [["shape (B, H, T)", "dtype", "padded", "pass", "SDPA ms", "written-out ms", "SDPA / written-out"]], []
    for shape in SHAPES:
        for dtype in (torch.bfloat16, torch.float32):
            for padded in (False, True):
                for train in (True, False):
                    a = timed(sdpa, shape, dtype, padded, train, args.reps)
                    b = timed(written_out(shape[1]), shape, dtype, padded, train, args.reps)
                    name = str(dtype).removeprefix("torch.")
                    out.append({"shape": shape, "dtype": name, "padded": padded, "train": train,
                                "sdpa_ms": a, "written_out_ms": b})
                    rows.append([str(shape), name, "yes" if padded else "no",
                                 "fwd+bwd" if train else "fwd", f"{a:.2f}", f"{b:.2f}", f"{a / b:.2f}"])
    print(common.table(rows))
    path = common.write_json("attention_paths", {"machine": info, "threads": torch.get_num_threads(),
                                                 "results": out})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
