"""Faster CPU kernels: a linear layer (oneDNN's inner product, with the bias fused) and
the MLM cross-entropy in fewer passes over the logits (``cross_entropy``).

Two measured problems with ``F.linear`` on the CPU (torch 2.13, 1 thread, an AMD EPYC
with AVX512-BF16; ``benchmarks/RESULTS.md`` has the figures and the command):

- fp32 matmuls go to MKL, which on this non-Intel AVX512 CPU ran at ~85 GFLOP/s where
  oneDNN's inner product ran at ~140: a (4096, 512) x (512, 2048) forward took 101 ms
  against 61, the input gradient 96 ms against 44, the weight gradient 98 against 78.
- with a bias, ``F.linear`` becomes ``addmm``, which first copies the broadcast bias into
  the output and then accumulates the product into it: in bf16 that took ~1.4x a plain
  matmul. oneDNN adds the bias inside the kernel.

``linear`` therefore runs ``torch.ops.mkldnn._linear_pointwise`` (the op that torch's own
compiler emits for CPU linears) forward on an AVX-512 CPU, and in fp32 also for both
gradients. Where it would not help or is not there (CUDA, autocast, torch.compile
tracing, AVX2 CPUs, where oneDNN held to AVX2 measured no faster than MKL, other
dtypes, a torch without mkldnn) it is ``F.linear``. Results agree with ``F.linear`` to rounding
(``tests/test_kernels.py``).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from zhbert.dropout import dropout_keep_mask

_DTYPES = (torch.float32, torch.bfloat16)


@functools.cache
def onednn_available() -> bool:
    return (torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


@functools.cache
def _measured_faster_here() -> bool:
    """oneDNN's linear was measured faster on an AVX-512 CPU only; with oneDNN held to AVX2
    it was not, and other CPUs (ARM, plain x86) were not measured: F.linear there."""
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def inner_product(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """x (..., K) @ w (N, K)^T + b (N,) -> (..., N) in one oneDNN kernel."""
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return inner_product(x, w, b)

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1])  # (BT, N)
        x2 = x.reshape(-1, x.shape[-1])        # (BT, K)
        onednn = grad.dtype == torch.float32  # bf16 matmuls are oneDNN's already
        if onednn and not x2.is_contiguous():
            # a strided input (the pooler's [CLS] rows, hidden[:, 0]) as the transposed
            # "weight" sent oneDNN's fp32 inner product down a path 500x slower: 245 ms for
            # a (256, 256) gradient at B=256, T=16 against 0.5 ms from a copy, and 31 ms
            # against 0.14 at B=32, T=128 (AMD EPYC family 25 model 17, 2 threads)
            x2 = x2.contiguous()
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:  # (..., N) @ (N, K): a linear with weight w^T (K, N)
            gx = inner_product(grad, w.t(), None) if onednn else grad @ w
        if ctx.needs_input_grad[1]:  # (N, BT) @ (BT, K): a linear with weight x^T (K, BT)
            gw = inner_product(g2.t(), x2.t(), None) if onednn else g2.t() @ x2
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g2.sum(0)
        return gx, gw, gb


def _fast_path(x: torch.Tensor, w: torch.Tensor) -> bool:
    if x.device.type != "cpu" or x.dtype not in _DTYPES or w.dtype != x.dtype:
        return False
    if torch.compiler.is_compiling() or torch.is_autocast_enabled("cpu"):
        return False  # inductor has its own CPU linears; autocast casts inside F.linear
    return _measured_faster_here() and onednn_available()


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, w, b)``, on the CPU through oneDNN where that was measured faster."""
    if not _fast_path(x, w):
        return F.linear(x, w, b)
    return _OneDNNLinear.apply(x, w, b)


class Linear(torch.nn.Linear):
    """``nn.Linear`` (same parameters and state_dict names) whose forward is ``linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def linear_gelu(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``F.gelu(F.linear(x, w, b))`` (exact erf GELU) for inference: on the fast path one
    oneDNN kernel with the GELU fused (bf16 (4096, 512) x (512, 2048): 21 ms against 40).
    With autograd recording it is the two ops (the backward needs the pre-activation)."""
    if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad) or not _fast_path(x, w):
        return F.gelu(linear(x, w, b))
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "gelu", [], "none")


_TINY = torch.finfo(torch.float32).tiny
_FAR = 1e-30  # below this (or the dtype's smallest normal) p(label) loses digits


class _SoftmaxCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy over the rows whose label is not -100, from one softmax.

    ``F.cross_entropy(logits.float())`` makes five passes over an (N, V) fp32 copy (cast,
    log_softmax, a zero fill and scatter for nll's gradient, log_softmax's backward) and a
    cast of the gradient back. Here: the softmax in the logits' dtype (fp32 inside), one
    sum, and in backward one scaled copy. 1 - p(label) is never 1 minus a rounded p near
    1 (which cancels in bf16): the label's entry is zeroed and the row summed, so it is
    the sum of the other probabilities (fp32 accumulation), to bf16's 2^-9 relative. The
    loss is log1p(that / p); where p(label) is near or under fp32's range, from the
    logits."""

    @staticmethod
    def forward(ctx, logits, labels):
        p = torch.softmax(logits, -1)
        valid = labels != -100
        safe = labels.masked_fill(~valid, 0)
        rows = torch.arange(len(safe), device=safe.device)
        picked = p[rows, safe].float()
        p.index_put_((rows, safe), p.new_zeros(()))
        others = p.sum(-1).float()  # 1 - p(label)
        per_row = torch.log1p(others / picked.clamp_min(_TINY))
        far = valid & (picked < max(_FAR, torch.finfo(p.dtype).tiny))  # fp16: under 6e-5
        if bool(far.any()):
            r = far.nonzero().squeeze(1)
            exact = torch.logsumexp(logits[r].float(), -1) - logits[r, safe[r]].float()
            per_row = per_row.index_put((r,), exact)
        count = valid.sum()
        loss = (per_row * valid).sum() / count
        ctx.save_for_backward(p, rows, safe, valid, others, count)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        p, rows, safe, valid, others, count = ctx.saved_tensors
        scale = (grad / count).item()  # the CPU only: no device to wait for
        g = p * scale  # 0 at the labels (zeroed in forward)
        ignored = (~valid).nonzero().squeeze(1)  # a few padding rows: not a pass over g
        if len(ignored):
            g.index_fill_(0, ignored, 0)
        # index_put_, not scatter_: a bf16 scatter_ copies all of g twice (torch 2.13 CPU, 6 ms)
        g.index_put_((rows, safe), (-others * scale * valid).to(g.dtype))
        return g, None


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``F.cross_entropy(logits.float(), labels, ignore_index=-100)``, (N, V) and (N,): on
    the CPU in fewer passes (``_SoftmaxCrossEntropy``); elsewhere, or compiled, F's."""
    if logits.device.type != "cpu" or torch.compiler.is_compiling():
        return F.cross_entropy(logits.float(), labels, ignore_index=-100)
    return _SoftmaxCrossEntropy.apply(logits, labels)


class _Attention(torch.autograd.Function):
    """softmax(q k^T / sqrt(D)) v, dropout on the weights, from the fused q/k/v projection
    (B, T, 3C) to (B, T, C). Written as autograd ops, the heads' (B, T, 3H, D) layout cost a
    copy of q, k and v each into head-major (B*H, T, D) for the batched matmuls, forward and
    again in backward, a pass to scale q, and a cat plus a transposing copy to assemble the
    q/k/v gradient. Here: one copy into (3, B*H, T, D), the scale inside the matmul
    (``baddbmm``'s alpha), and each gradient copied once into its place."""

    @staticmethod
    def forward(ctx, qkv, heads, p, mask):
        B, T, C3 = qkv.shape
        D = C3 // (3 * heads)
        hq = qkv.view(B, T, 3, heads, D).permute(2, 0, 3, 1, 4).contiguous()  # (3, B, H, T, D)
        q, k, v = (hq[i].view(B * heads, T, D) for i in range(3))
        s = _scaled_bmm(q, k.transpose(1, 2), D ** -0.5)  # (B*H, T, T)
        if mask is not None:  # (B, 1, 1, T), True = a real key
            s.view(B, heads, T, T).masked_fill_(~mask, float("-inf"))
        a = torch.softmax(s, -1)
        m = dropout_keep_mask(a, p) if p > 0 else None
        ad = a * m if m is not None else a
        y = torch.bmm(ad, v).view(B, heads, T, D).transpose(1, 2).reshape(B, T, heads * D)
        ctx.save_for_backward(hq, a, ad, m)
        ctx.shape = (B, T, heads, D)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        hq, a, ad, m = ctx.saved_tensors
        B, T, H, D = ctx.shape
        q, k, v = (hq[i].view(B * H, T, D) for i in range(3))
        g = gy.reshape(B, T, H, D).transpose(1, 2).reshape(B * H, T, D)
        out = gy.new_empty(B, T, 3, H, D)
        parts = out.permute(2, 0, 3, 1, 4)  # (3, B, H, T, D) views of the (B, T, 3C) gradient
        parts[2].copy_(torch.bmm(ad.transpose(1, 2), g).view(B, H, T, D))
        gad = torch.bmm(g, v.transpose(1, 2))
        if m is not None:
            gad.mul_(m)
        gs = torch._softmax_backward_data(gad, a, -1, a.dtype)
        parts[0].copy_(_scaled_bmm(gs, k, D ** -0.5).view(B, H, T, D))
        parts[1].copy_(_scaled_bmm(gs.transpose(1, 2), q, D ** -0.5).view(B, H, T, D))
        return out.view(B, T, 3 * H * D), None, None, None


def _scaled_bmm(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """alpha * (x @ y), batched, the scale applied inside the matmul (beta 0: no input read)."""
    empty = x.new_empty(()).expand(x.shape[0], x.shape[1], y.shape[2])
    return torch.baddbmm(empty, x, y, beta=0.0, alpha=alpha)


def attention(qkv: torch.Tensor, heads: int, p: float, mask: torch.Tensor | None) -> torch.Tensor:
    """Multi-head attention with dropout ``p`` on the weights, on the CPU, from the fused
    projection ``qkv`` (B, T, 3C: q, k, v, each head's D values together) to (B, T, C);
    ``mask`` (B, 1, 1, T) bool, True for a real key, or None (``_Attention``)."""
    return _Attention.apply(qkv, heads, p, mask)
