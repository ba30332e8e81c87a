"""Precision resolver (machine-independent: Capabilities are injected) and machine detection."""

from __future__ import annotations

import warnings

import pytest
import torch

from zhbert import precision as P
from zhbert.errors import UserError
from zhbert.machine import Capabilities, cpu_info, describe_machine, detect_capabilities

AMD = Capabilities("cpu", "AMD EPYC", cpu_native_bf16=False, cuda_bf16=False,
                   cpu_capability="AVX2")
XEON = Capabilities("cpu", "Intel Xeon Platinum 8480+", cpu_native_bf16=True, cuda_bf16=False,
                    cpu_capability="AVX512")
A100 = Capabilities("cuda", "AMD EPYC", cpu_native_bf16=False, cuda_bf16=True,
                    cuda_name="NVIDIA A100")
T4 = Capabilities("cuda", "Intel Xeon", cpu_native_bf16=True, cuda_bf16=False,
                  cuda_name="Tesla T4")


def no_probe():
    raise AssertionError("the bf16 probe must only run for explicit bf16 on a slow-bf16 CPU")


@pytest.fixture(autouse=True)
def fresh_warning_state(monkeypatch):
    monkeypatch.setattr(P, "_warned", set())


@pytest.mark.parametrize("requested, caps, expected", [
    ("auto", AMD, "fp32"),
    ("auto", XEON, "bf16"),
    ("auto", A100, "bf16"),
    ("auto", T4, "fp16"),
    ("fp32", AMD, "fp32"),
    ("fp32", XEON, "fp32"),
    ("fp32", A100, "fp32"),
    ("bf16", XEON, "bf16"),
    ("bf16", A100, "bf16"),
    ("fp16", A100, "fp16"),
    ("fp16", T4, "fp16"),
])
def test_resolution_table(requested, caps, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these cases may warn
        got = P.resolve_precision(requested, caps, probe=no_probe)
    assert got.precision == expected
    assert got.reason and caps.device_type in ("cpu", "cuda")


def test_auto_never_picks_bf16_on_cpu_without_native_bf16():
    for name in ("AMD EPYC", "Intel Core i7", "Ampere Altra"):
        caps = Capabilities("cpu", name, cpu_native_bf16=False, cuda_bf16=True)
        got = P.resolve_precision("auto", caps, probe=no_probe)
        assert got.precision == "fp32"
        assert name in got.reason and "no native bf16" in got.reason


def test_explicit_bf16_on_slow_cpu_warns_once_with_factor():
    calls = []

    def probe():
        calls.append(1)
        return 21.5

    with pytest.warns(P.PrecisionWarning, match=r"21\.5x slower than fp32") as rec:
        got = P.resolve_precision("bf16", AMD, probe=probe)
    assert got.precision == "bf16" and "21.5x" in got.reason
    assert len(rec) == 1 and "AMD EPYC" in str(rec[0].message)
    assert rec[0].filename == __file__  # points at the caller, not at precision.py
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # second time: no warning
        assert P.resolve_precision("bf16", AMD, probe=probe).precision == "bf16"


@pytest.mark.parametrize("requested, caps, words", [
    ("fp16", AMD, "CUDA"),
    ("fp16", XEON, "CUDA"),
    ("bf16", T4, "Tesla T4"),
    ("fp64", AMD, "--precision"),
    ("BF16", A100, "--precision"),
])
def test_user_errors(requested, caps, words):
    with pytest.raises(UserError, match=words):
        P.resolve_precision(requested, caps, probe=no_probe)


def test_autocast_and_grad_scaler_helpers():
    assert P.needs_grad_scaler("fp16", "cuda")
    assert P.needs_grad_scaler("fp16", torch.device("cuda:0"))
    assert not P.needs_grad_scaler("bf16", "cuda") and not P.needs_grad_scaler("fp32", "cpu")
    x = torch.randn(4, 4)
    with P.autocast_context("fp32", "cpu"):
        assert (x @ x).dtype == torch.float32
    with P.autocast_context("bf16", "cpu"):
        assert (x @ x).dtype == torch.bfloat16


def test_probe_measures_a_positive_ratio():
    factor = P.bf16_slowdown_probe.__wrapped__(n=32, reps=2)  # uncached, tiny: fast anywhere
    assert factor > 0


def test_machine_detection_keys():
    info = cpu_info()
    assert set(info) == {"cpu", "flags", "torch_cpu_capability", "threads", "torch", "cuda_device"}
    assert set(info["flags"]) == {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
    assert all(isinstance(v, bool) for v in info["flags"].values())
    assert info["threads"] == torch.get_num_threads()
    assert info["torch"] == torch.__version__.split("+")[0]
    line = describe_machine()
    assert info["cpu"] in line and f"torch {info['torch']}" in line and "\n" not in line
    caps = detect_capabilities("cpu")
    assert caps.device_type == "cpu" and not caps.cuda_bf16 and caps.cuda_name is None
    assert caps.cpu_capability == torch.backends.cpu.get_cpu_capability()
    flags = info["flags"]
    if flags["amx_bf16"] or flags["avx512_bf16"]:
        assert caps.cpu_native_bf16


def test_cpu_name_is_cleaned():
    from zhbert.machine import _cpu_name

    assert _cpu_name({"model name": "Intel(R) Xeon(R) CPU @ 2.20GHz"}, {}) == "Intel Xeon"
    assert _cpu_name({}, {"cpu_name": "AMD EPYC"}) == "AMD EPYC"


def test_bf16_weights_train_a_bf16_copy_of_fp32_masters():
    from zhbert.model import BertForPretraining, ModelConfig
    torch.manual_seed(0)
    master = BertForPretraining(ModelConfig(vocab_size=50, hidden_size=32, num_layers=1,
                                            num_heads=2, intermediate_size=64)).train()
    bf = P.Bf16Weights(master)
    emb = bf.module.bert.embeddings.word_embeddings.weight
    assert emb.dtype == torch.bfloat16 and bf.module.cls.predictions.decoder.weight is emb  # still tied
    assert all(p.dtype == torch.float32 for p in master.parameters())
    opt = torch.optim.AdamW(master.parameters(), lr=1e-2)
    ids = torch.randint(5, 50, (4, 16))
    batch = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids),
             "attention_mask": torch.ones_like(ids, dtype=torch.bool),
             "mlm_positions": torch.arange(1, 4).expand(4, 3), "mlm_labels": ids[:, 1:4],
             "nsp_labels": torch.tensor([0, 1, 0, 1])}
    bf.module(batch).loss.backward()
    want = [p.grad.float() for p in bf.params]
    bf.grads_to_master()
    assert all(p.grad is None for p in bf.params)  # moved, not copied: no stale bf16 grads
    for m, g in zip(master.parameters(), want):
        assert m.grad.dtype == torch.float32 and torch.equal(m.grad, g)
    before = [p.detach().clone() for p in master.parameters()]
    opt.step()
    bf.sync_from_master()
    assert any(not torch.equal(a, b) for a, b in zip(before, master.parameters()))
    for m, p in zip(master.parameters(), bf.params):  # the copy is the master rounded to bf16
        assert torch.equal(p, m.detach().to(torch.bfloat16))


def test_fp32_on_ampere_uses_tf32_and_says_so(monkeypatch):
    got = P.resolve_precision("fp32", A100, probe=no_probe)
    assert got.tf32 and "TF32" in got.reason
    for caps in (T4, AMD):  # pre-Ampere GPUs and CPUs have no TF32
        assert not P.resolve_precision("fp32", caps, probe=no_probe).tf32
    assert not P.resolve_precision("auto", A100, probe=no_probe).tf32  # bf16: no fp32 matmuls
    monkeypatch.setenv("ZHBERT_TF32", "0")
    assert not P.resolve_precision("fp32", A100, probe=no_probe).tf32


def test_apply_matmul_precision_sets_the_tf32_backend_flag(monkeypatch):
    before = torch.backends.cuda.matmul.fp32_precision
    try:
        P.apply_matmul_precision(P.resolve_precision("fp32", A100, probe=no_probe))
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
        torch.backends.cuda.matmul.fp32_precision = before
        P.apply_matmul_precision(P.resolve_precision("fp32", T4, probe=no_probe))
        assert torch.backends.cuda.matmul.fp32_precision == before
    finally:
        torch.backends.cuda.matmul.fp32_precision = before


@pytest.mark.parametrize("requested, caps, words", [
    ("auto", A100, "bf16 copy of the model trains"),  # not "bf16 autocast": that is not what runs
    ("bf16", XEON, "bf16 copy of the model trains"),
    ("auto", XEON, "bf16 copy of the model trains"),
    ("auto", T4, "fp16 autocast with dynamic loss scaling"),
])
def test_reason_says_what_the_step_does(requested, caps, words):
    reason = P.resolve_precision(requested, caps, probe=no_probe).reason
    assert words in reason and "bf16 autocast" not in reason


def test_a_gpu_that_torch_cannot_use_is_named_once_with_the_setup_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    msg = P.unused_gpu_message(nvidia_smi="/usr/bin/nvidia-smi", dev_nodes=[])
    assert "CPU-only build" in msg and 'make setup TORCH_INDEX=https://download.pytorch.org/whl/cu128' in msg
    assert P.unused_gpu_message(nvidia_smi="", dev_nodes=["/dev/nvidia0"]) is not None
    assert P.unused_gpu_message(nvidia_smi="", dev_nodes=[]) is None  # no GPU: nothing to say
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    assert "finds no usable device" in P.unused_gpu_message(nvidia_smi="x", dev_nodes=[])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert P.unused_gpu_message(nvidia_smi="x", dev_nodes=[]) is None  # it is used
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(P, "unused_gpu_message", lambda: "GPU unused")
    with pytest.warns(P.PrecisionWarning, match="GPU unused") as record:
        P.warn_unused_gpu()
        P.warn_unused_gpu()
    assert len(record) == 1


def test_bf16_gradient_accumulation_adds_up_in_fp32():
    """grads_to_master after every micro-batch: the sum is the fp32 sum of the bf16
    micro-batch gradients, not a bf16 sum rounded at every add (what DDP's no_sync
    accumulation in the bf16 copy did)."""
    master = torch.nn.Linear(64, 64)
    bf = P.Bf16Weights(master)
    x = torch.randn(8, 64)
    per_micro = []
    for scale in (1.0, 1e-3, 1e-3, 1e-3):  # small later contributions: lost in a bf16 sum
        bf.module(x.bfloat16() * scale).sum().backward()
        per_micro.append(bf.module.weight.grad.float().clone())
        bf.grads_to_master()
        assert bf.module.weight.grad is None
    fp32_sum = torch.stack(per_micro).sum(0)
    torch.testing.assert_close(master.weight.grad, fp32_sum, rtol=1e-6, atol=1e-6)
    bf16_sum = per_micro[0].bfloat16()
    for g in per_micro[1:]:
        bf16_sum = bf16_sum + g.bfloat16()
    assert (bf16_sum.float() - fp32_sum).abs().max() > 10 * (master.weight.grad - fp32_sum).abs().max()


def test_grad_scaler_overflow_skips_are_not_divergence():
    """GradScaler("cpu") with forced overflows: each is a skip (the scale halves, the
    weights stay), classified as the scaler's, until the scale falls below 1."""
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    before = model.weight.detach().clone()
    kinds = []
    for _ in range(4):
        loss = model(torch.ones(2, 4)).sum()
        scaler.scale(loss * float("inf")).backward()  # an overflow in the backward
        scaler.unscale_(opt)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        assert not torch.isfinite(norm)
        kinds.append(P.classify_bad_step(bool(torch.isfinite(loss)), scaler))
        scaler.step(opt)  # skipped
        scaler.update()
        opt.zero_grad()
    assert scaler.get_scale() == 0.25 and torch.equal(model.weight, before)
    assert kinds == [P.SCALER_SKIP] * 3 + [P.NONFINITE]  # scales 4, 2, 1, then 0.5 < 1
    assert P.classify_bad_step(False, torch.amp.GradScaler("cpu")) == P.NONFINITE  # nan loss
    assert P.classify_bad_step(True, None) == P.NONFINITE  # no scaler: inf grads diverge


def test_torch_held_to_avx2_is_not_native_bf16():
    """ATEN_CPU_CAPABILITY=avx2 on a CPU with AVX512-BF16 (how the AVX2-only machines were
    emulated here): torch's bf16 kernels are the scalar ones, so precision=auto must pick
    fp32, as on a real AVX2 CPU, and the demo its fp32 minutes."""
    import subprocess
    import sys
    code = ("from zhbert.machine import detect_capabilities as d; "
            "from zhbert.precision import resolve_precision as r; c = d('cpu'); "
            "print(c.cpu_capability, c.cpu_native_bf16, r('auto', c).precision, r('auto', c).reason)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "ATEN_CPU_CAPABILITY": "avx2"}).stdout
    capability, native, precision, reason = out.split(" ", 3)
    if capability != "AVX2":
        pytest.skip(f"torch did not take ATEN_CPU_CAPABILITY=avx2 here ({capability})")
    assert native == "False" and precision == "fp32" and "held to AVX2" in reason, out
