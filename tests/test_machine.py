"""zhbert.machine.tune_malloc: training steps stop page-faulting their activations in."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Training steps of a small model in a fresh process, with or without tune_malloc:
# minor page faults of six steps after two warm-up steps.
_CHILD = """
import json, resource, sys, torch
from zhbert.machine import tune_malloc
from zhbert.model import BertForPretraining, ModelConfig
took = tune_malloc() if sys.argv[1] == "tuned" else None
torch.manual_seed(0)
torch.set_num_threads(1)
# 3 layers: the last runs only at the masked slots, so 2 churned too little to tell (8.6K-39K)
model = BertForPretraining(ModelConfig(vocab_size=2000, hidden_size=256, num_layers=3,
                                       num_heads=4, intermediate_size=1024))
B, T, M = 16, 128, 20
batch = {"input_ids": torch.randint(5, 2000, (B, T)), "token_type_ids": torch.zeros(B, T, dtype=torch.long),
         "attention_mask": torch.ones(B, T, dtype=torch.bool),
         "mlm_positions": torch.arange(M).expand(B, M) + 1, "mlm_labels": torch.randint(5, 2000, (B, M)),
         "nsp_labels": torch.zeros(B, dtype=torch.long)}
def step():
    model.zero_grad(set_to_none=True)
    model(batch).loss.backward()
faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"took": took, "faults": sum(faults[2:])}))
"""


def _faults_per_step(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_tune_malloc_stops_page_faults_in_training_steps():
    plain, tuned = _faults_per_step("plain"), _faults_per_step("tuned")
    assert tuned["took"] is True
    # glibc's default hands activations back most steps (measured 50K-120K faults; tuned:
    # 0-5.5K, from the odd step where the heap still has to grow)
    assert plain["faults"] > 20_000, plain
    assert tuned["faults"] < plain["faults"] / 4, (plain, tuned)


def test_the_cpu_is_named_with_its_family_and_model():
    """Two 2-core "AMD EPYC" machines, both with AVX512-BF16, trained the demo's step in
    0.114 and 0.205 s: the model name alone did not say which CPU a figure came from."""
    from zhbert.machine import _cpu_name
    epyc = {"model name": "AMD EPYC", "cpu family": "25", "model": "17", "stepping": "1"}
    assert _cpu_name(epyc, {}) == "AMD EPYC family 25 model 17"
    xeon = {"model name": "Intel(R) Xeon(R) CPU @ 2.20GHz", "cpu family": "6", "model": "143"}
    assert _cpu_name(xeon, {}) == "Intel Xeon family 6 model 143"
    assert _cpu_name({"model name": "AMD EPYC"}, {}) == "AMD EPYC"  # no such fields: the name
    assert _cpu_name({}, {"cpu_name": "Apple M2"}) == "Apple M2"
