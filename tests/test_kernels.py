"""zhbert.kernels: linear gives F.linear's values and gradients (to rounding); cross_entropy
gives F.cross_entropy's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zhbert import kernels

needs_onednn = pytest.mark.skipif(not kernels.onednn_available(), reason="torch without mkldnn")


def _run(fn, x, w, b, gy):
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    b = None if b is None else b.clone().requires_grad_()
    y = fn(x, w, b)
    y.backward(gy)
    return y.detach(), x.grad, w.grad, None if b is None else b.grad


# bf16 through oneDNN is only ever taken on AVX-512 CPUs (elsewhere oneDNN may lack a bf16 kernel)
AVX512 = torch.backends.cpu.get_cpu_capability().startswith("AVX512")
DTYPES = [torch.float32, pytest.param(torch.bfloat16, marks=pytest.mark.skipif(
    not AVX512, reason="the bf16 oneDNN path runs on AVX-512 CPUs only"))]


@needs_onednn
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(3, 7, 24), (21, 24)])
def test_onednn_linear_matches_f_linear(dtype, bias, shape):
    """The oneDNN path (called directly, whatever this CPU is; fp32 gradients through
    oneDNN, bf16 ones through matmul) against F.linear in float64: fp32 within 1e-5
    relative, bf16 within bf16 rounding (2^-8 relative, a few times)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).to(dtype)
    w = torch.randn(40, shape[-1], generator=g).to(dtype)
    b = torch.randn(40, generator=g).to(dtype) if bias else None
    gy = torch.randn(*shape[:-1], 40, generator=g).to(dtype)
    got = _run(kernels._OneDNNLinear.apply, x, w, b, gy)
    want = _run(F.linear, x.double(), w.double(), None if b is None else b.double(), gy.double())
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=3e-2, atol=3e-2)
    for a, e in zip(got, want):
        if e is None:
            assert a is None
            continue
        assert a.dtype == dtype and a.shape == e.shape
        torch.testing.assert_close(a.double(), e, **tol)


@needs_onednn
def test_onednn_fp32_gradient_of_a_strided_input_is_dense_and_right(monkeypatch):
    """The pooler's input is hidden[:, 0], a strided view. Given to oneDNN's fp32 inner
    product as the transposed "weight" of the weight gradient, it took 245 ms where the
    same product of a dense copy took 0.5 ms (B=256, T=16, C=256, AMD EPYC family 25 model
    17): half of a 1-layer fp32 step. Every operand that reaches oneDNN in backward is a
    dense tensor or the transpose of one, and the gradients are still F.linear's."""
    seen = []
    real = kernels.inner_product
    monkeypatch.setattr(kernels, "inner_product",
                        lambda x, w, b: seen.append((x, w)) or real(x, w, b))
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(16, 8, 24, generator=g)
    w, b = torch.randn(40, 24, generator=g), torch.randn(40, generator=g)
    gy = torch.randn(16, 40, generator=g)

    def run(fn, *tensors):  # the input a strided view, as the pooler's is (_run clones)
        h, w_, b_ = (t.clone().requires_grad_() for t in tensors)
        y = fn(h[:, 0], w_, b_)
        y.backward(gy.to(y.dtype))
        return y.detach(), h.grad, w_.grad, b_.grad
    got = run(kernels._OneDNNLinear.apply, hidden, w, b)
    want = run(F.linear, hidden.double(), w.double(), b.double())
    for a, e in zip(got, want):
        torch.testing.assert_close(a.double(), e, rtol=1e-5, atol=1e-5)
    dense = lambda t: t.is_contiguous() or t.t().is_contiguous()  # noqa: E731
    assert len(seen) == 3 and all(dense(t) for pair in seen[1:] for t in pair), \
        [(t.shape, t.stride()) for pair in seen for t in pair]


def test_linear_falls_back_to_f_linear_where_it_should(monkeypatch):
    """A CPU without AVX-512, autocast and float64 take F.linear; the oneDNN path is
    taken only where it was measured faster."""
    calls = []
    monkeypatch.setattr(kernels._OneDNNLinear, "apply", lambda *a: calls.append(a) or F.linear(*a))
    x, w = torch.randn(4, 8), torch.randn(5, 8)
    monkeypatch.setattr(kernels, "_measured_faster_here", lambda: False)
    kernels.linear(x, w)
    kernels.linear(x.bfloat16(), w.bfloat16())
    assert calls == []  # an AVX2 CPU, where oneDNN measured no faster
    monkeypatch.setattr(kernels, "_measured_faster_here", lambda: True)
    kernels.linear(x.double(), w.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kernels.linear(x, w)
    assert calls == []
    kernels.linear(x, w)
    assert len(calls) == int(kernels.onednn_available())


def test_linear_module_keeps_nn_linear_names_and_values():
    torch.manual_seed(0)
    ref = torch.nn.Linear(8, 3)
    mine = kernels.Linear(8, 3)
    mine.load_state_dict(ref.state_dict())
    assert list(mine.state_dict()) == ["weight", "bias"]
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(mine(x), ref(x), rtol=1e-5, atol=1e-6)


@needs_onednn
@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_gelu_is_exact_erf_gelu_of_linear(monkeypatch, dtype):
    """The fused inference kernel computes erf GELU (not the tanh approximation)."""
    monkeypatch.setattr(kernels, "_measured_faster_here", lambda: True)
    g = torch.Generator().manual_seed(1)
    x, w, b = (torch.randn(s, generator=g) for s in ((2, 9, 32), (64, 32), (64,)))
    want = F.gelu(F.linear(x.double(), w.double(), b.double()))
    with torch.no_grad():
        got = kernels.linear_gelu(x.to(dtype), w.to(dtype), b.to(dtype))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=3e-2, atol=3e-2)
    torch.testing.assert_close(got.double(), want, **tol)
    tanh = F.gelu(F.linear(x.double(), w.double(), b.double()), approximate="tanh")
    if dtype == torch.float32:  # the two GELUs differ by up to ~1e-3: this tells them apart
        assert (got.double() - tanh).abs().max() > 1e-4


def test_benchmark_peak_skips_a_onednn_kernel_that_this_isa_lacks(monkeypatch):
    # with oneDNN held to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2) it has no bf16 inner product and
    # raises; the benchmarks' matmul peak then comes from torch's matmul alone
    from benchmarks import common

    def no_primitive(*args):
        raise RuntimeError("could not create a primitive descriptor for the inner product")

    monkeypatch.setattr(kernels, "onednn_available", lambda: True)
    monkeypatch.setattr(kernels, "inner_product", no_primitive)
    assert common.matmul_gflops(torch.float32, n=64, reps=1) > 0


def _ce(fn, logits, labels, grad=1.0):
    x = logits.clone().requires_grad_()
    loss = fn(x, labels)
    (loss * grad).backward()
    return loss.detach().double(), x.grad.double()


def _reference_ce(logits, labels, grad=1.0):
    return _ce(lambda x, y: F.cross_entropy(x.double(), y, ignore_index=-100), logits, labels,
               grad)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 2**-7),
                                        (torch.float16, 2**-9)])
@pytest.mark.parametrize("sharpness", [1.0, 8.0, 40.0])
def test_cross_entropy_matches_f_cross_entropy(dtype, tol, sharpness):
    """Loss and gradient against F.cross_entropy in float64 on the same (rounded) logits,
    with ignored rows (-100), confident rows (p(label) near 1, where 1 - p must not cancel)
    and, at sharpness 40, labels whose probability underflows fp32 (the loss from the logits)."""
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(96, 300, generator=g) * sharpness).to(dtype)
    labels = logits.float().argmax(-1)  # confident where the spread is wide
    labels[::3] = torch.randint(0, 300, (32,), generator=g)
    labels[5::7] = -100
    want_loss, want_grad = _reference_ce(logits, labels, grad=0.5)
    loss, grad = _ce(kernels.cross_entropy, logits, labels, grad=0.5)
    assert abs(loss - want_loss) <= tol * abs(want_loss)
    assert (grad - want_grad).abs().max() <= tol * want_grad.abs().max()
    assert torch.all(grad[5::7] == 0)  # ignored rows get no gradient
    # the label entries, -(1 - p) * scale, to their own relative precision, down to fp32's
    # cancellation (1 - p is computed in fp32): a bf16 p near 1 would be off by ~2^-9 * scale
    rows = (labels != -100).nonzero().squeeze(1)
    at, want_at = grad[rows, labels[rows]], want_grad[rows, labels[rows]]
    floor = 4 * torch.finfo(torch.float32).eps * want_grad.abs().max()
    assert ((at - want_at).abs() <= 4 * tol * want_at.abs() + floor).all()


def test_cross_entropy_without_labels_is_nan_like_f():
    """No labelled row: 0 / 0, as F.cross_entropy with every label ignored."""
    logits = torch.randn(4, 10)
    labels = torch.full((4,), -100)
    assert torch.isnan(kernels.cross_entropy(logits, labels))
    assert torch.isnan(F.cross_entropy(logits, labels, ignore_index=-100))


def test_cross_entropy_benchmark_makes_confident_and_ignored_rows():
    """benchmarks.cross_entropy's logits: the asked share of rows with p(label) > 0.5 (the
    costly case late in training), the last 50 rows ignored; its timer runs both losses."""
    from benchmarks import cross_entropy as bench

    x, labels = bench.logits_and_labels(1000, 300, torch.bfloat16, confident=0.4)
    valid = labels != -100
    assert valid.sum() == 950 and not valid[-50:].any()
    p = torch.softmax(x.float(), -1)[valid].gather(1, labels[valid][:, None]).squeeze(1)
    assert abs((p > 0.5).float().mean().item() - 0.4) < 0.05
    assert bench.median_ms(kernels.cross_entropy, x, labels, repeats=2) > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_cross_entropy_of_an_unlikely_label_in_every_dtype(dtype):
    """p(label) ~ 8e-7 is subnormal in fp16 (its softmax output keeps ~3 bits there): the
    loss comes from the logits instead, to the dtype's rounding of the logits."""
    logits = torch.zeros(4, 300)
    logits[:, 7] = 14.0  # the label (0) trails by 14: p ~ exp(-14) ~ 8e-7
    labels = torch.zeros(4, dtype=torch.long)
    want = F.cross_entropy(logits.to(dtype).double(), labels).item()
    assert abs(kernels.cross_entropy(logits.to(dtype), labels).item() - want) < 1e-4 * want


def _attention_pair(dtype, p, padded, seed=0):
    """kernels.attention and SelfAttention.attend_written_out (the autograd-op path) on the
    same fused qkv, with the same dropout draws: outputs and qkv gradients of both."""
    from zhbert.model import ModelConfig, SelfAttention
    B, T, H, D = 3, 7, 2, 4
    g = torch.Generator().manual_seed(seed)
    qkv0 = torch.randn(B, T, 3 * H * D, generator=g).to(dtype)
    gy = torch.randn(B, T, H * D, generator=g).to(dtype)
    mask = None
    if padded:  # the last rows' final keys are padding
        mask = torch.ones(B, 1, 1, T, dtype=torch.bool)
        mask[1, ..., 5:] = False
        mask[2, ..., 3:] = False
    cfg = ModelConfig(vocab_size=10, hidden_size=H * D, num_heads=H, attention_dropout=p)
    att = SelfAttention(cfg).train()
    results = []
    for path in ("kernel", "ops"):
        qkv = qkv0.clone().requires_grad_()
        torch.manual_seed(seed)  # the dropout draws
        if path == "kernel":
            y = kernels.attention(qkv, H, p, mask)
        else:
            q, k, v = qkv.view(B, T, 3 * H, D).transpose(1, 2).split(H, dim=1)
            y = att.attend_written_out(q, k, v, mask).transpose(1, 2).reshape(B, T, H * D)
        y.backward(gy)
        results.append((y.detach().float(), qkv.grad.float()))
    return results


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("p", [0.0, 0.25])
@pytest.mark.parametrize("padded", [False, True])
def test_attention_kernel_matches_the_autograd_ops(dtype, tol, p, padded):
    (y, gq), (y_ref, gq_ref) = _attention_pair(dtype, p, padded)
    torch.testing.assert_close(y, y_ref, atol=tol, rtol=tol)
    torch.testing.assert_close(gq, gq_ref, atol=tol, rtol=tol)
    assert torch.isfinite(gq).all()
