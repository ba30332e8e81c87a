"""A cheaper dropout for the CPU: 8-bit lanes of 64-bit random draws (``Dropout``)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Dropout(nn.Dropout):
    """nn.Dropout with a cheaper draw. The CPU's uniform_ costs ~10 ns an element, and
    dropout (3 per layer, one on the (B, H, T, T) attention weights) was ~12% of a
    `seed` training step. One 64-bit draw gives eight 8-bit lanes instead: an element is
    kept when its lane is >= a threshold, so the drop probability is p rounded to 1/256
    (``effective_p``: 0.1 -> 0.1016). PyTorch's own CUDA flash
    attention rounds its dropout to 8 bits the same way (``p_dropout_in_uint8_t``).
    Kept elements are scaled by 1/(1 - effective p), so the expectation is exact.
    16-bit lanes (p to 1/65536) took ~1.5x as long: see benchmarks/RESULTS.md."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * dropout_keep_mask(x, self.p)


_BITS = 8
_LANES = 64 // _BITS  # int8 lanes per int64 random draw


def effective_p(p: float) -> float:
    """The drop probability a lane threshold gives: ``p`` rounded to 1/256."""
    return round(p * 2**_BITS) / 2**_BITS


def dropout_keep_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """1/(1 - effective_p(p)) where kept and 0 where dropped, shaped and typed like ``x``."""
    q = effective_p(p)
    if q >= 1.0:  # everything dropped, as nn.Dropout(1.0)
        return torch.zeros_like(x)
    n = x.numel()
    lanes = random_words((n + _LANES - 1) // _LANES, x.device).view(torch.int8)[:n].view(x.shape)
    threshold = -2**(_BITS - 1) + round(q * 2**_BITS)  # P(lane < threshold) = q
    return keep_lanes(lanes, threshold).to(x.dtype).mul_(1.0 / (1.0 - q))


def random_words(n: int, device: torch.device) -> torch.Tensor:
    """``n`` random int64 words, every bit random, from torch's generator (so that its state,
    which a checkpoint keeps, decides them). On the CPU, eagerly, torch's generator gives one
    seed and numpy's SFC64 the words: torch's Mersenne Twister is serial and took 0.74 ms for
    the 262,144 words of a (32, 4, 128, 128) mask, SFC64 0.38 (1 thread, AMD EPYC; dropout
    was 7% of a `tiny` step)."""
    if device.type != "cpu" or torch.compiler.is_compiling():
        # the full signed range, so that all 64 bits are random (random_() leaves the top bit
        # 0); randint rather than random_: torch.compile traces it without a graph break
        return torch.randint(-2**63, 2**63 - 1, (n,), dtype=torch.int64, device=device)
    seed = int(torch.randint(-2**63, 2**63 - 1, (), dtype=torch.int64, device=device)) % 2**64
    return torch.from_numpy(np.random.SFC64(seed).random_raw(n).view(np.int64))


def keep_lanes(lanes: torch.Tensor, threshold: int) -> torch.Tensor:
    """``lanes >= threshold`` as 0/1 in the lanes' integer dtype, by clamping into
    [threshold - 1, threshold]: on the CPU bool -> float is not vectorised (4 ms per 4M
    elements, more than clamp + sub + the integer -> float cast together)."""
    if threshold <= torch.iinfo(lanes.dtype).min:  # p rounded to 0: keep all (no underflow)
        return torch.ones_like(lanes)
    return lanes.clamp(threshold - 1, threshold).sub_(threshold - 1)
