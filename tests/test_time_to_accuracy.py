"""benchmarks.time_to_accuracy: the HF evaluation scores like zhbert's own, and the
race keeps each side's clock honest and stops at the budget or the target."""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks import race_sides
from benchmarks import time_to_accuracy as tta
from zhbert.data import DataConfig, build_eval_set
from zhbert.evaluate import evaluate
from zhbert.model import BertForPretraining, ModelConfig
from zhbert.run import data_config


@pytest.fixture
def one_thread():
    """Two threads on a box others load wait ~1 s per step on descheduled threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fp32():
    return torch.autocast("cpu", enabled=False)


def test_evaluate_hf_matches_zhbert_evaluate(synthetic_data, one_thread):
    from transformers import BertForMaskedLM

    batches = build_eval_set(synthetic_data, "validation", DataConfig(max_len=32),
                             max_sequences=48, batch_size=16)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=125, hidden_size=32, num_layers=2, num_heads=2,
                      intermediate_size=64, max_predictions=5)
    model = BertForPretraining(cfg).eval()
    with torch.no_grad():  # varied predictions, and the most frequent character favoured so
        for p in model.parameters():  # that accuracy is well above zero (Zipf: id 5 is top)
            p.add_(torch.randn_like(p) * 0.05)
        model.cls.predictions.bias[5] += 3.0
    hf = BertForMaskedLM._from_config(cfg.to_hf_config(), attn_implementation="sdpa")
    hf.load_state_dict(race_sides.mlm_state(model.state_dict()))  # strict: the names map 1:1

    ours = evaluate(model, batches, torch.device("cpu"), fp32, cfg.objective)
    ref = race_sides.evaluate_hf(hf, batches, torch.device("cpu"), fp32)
    assert ref["eval_masked"] == ours["eval_masked"] > 100
    assert ours["eval_mlm_acc"] > 0.05
    assert ref["eval_mlm_acc"] == pytest.approx(ours["eval_mlm_acc"], abs=1.5 / ours["eval_masked"])
    assert ref["eval_mlm_loss"] == pytest.approx(ours["eval_mlm_loss"], rel=1e-4)
    assert hf.training  # evaluation puts the model back in the mode it found


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_side(name, clock, step_s, accs, log, eval_s=5.0, max_steps=10_000):
    """A side whose step takes ``step_s`` on the fake clock and whose held-out
    accuracy after k steps is accs(k); each evaluation costs ``eval_s``."""
    side = race_sides.Side(name, None, None, max_steps, positions_per_step=100)

    def step(k):
        log.append((name, k))
        clock.now += step_s
        return 80

    def evaluate():
        clock.now += eval_s
        return {"eval_mlm_acc": accs(side.steps), "eval_mlm_loss": 1.0}

    side.step, side.evaluate = step, evaluate
    return side


def test_race_stops_each_side_at_the_budget_and_excludes_eval_time():
    clock, log = FakeClock(), []
    fast = fake_side("zhbert", clock, 0.3, lambda k: 0.01 * k, log)
    slow = fake_side("reference", clock, 0.7, lambda k: 0.01 * k, log)
    tta.race([fast, slow], budget_s=2.0, chunk_s=0.5, targets=[0.9], clock=clock, log=lambda m: None)
    for side, step_s in ((fast, 0.3), (slow, 0.7)):
        assert side.stopped == "budget"
        assert side.steps == math.ceil(2.0 / step_s)  # the step that crosses the budget finishes ...
        assert side.train_s - step_s < 2.0 <= side.train_s  # ... and no step starts after it
        assert side.train_s == pytest.approx(side.steps * step_s)  # evaluations not on the clock
        assert side.eval_s == pytest.approx(5.0 * len(side.curve))
        assert side.tokens == 80 * side.steps
        assert [p["train_s"] for p in side.curve] == sorted(p["train_s"] for p in side.curve)
    assert fast.curve[0] == {"train_s": 0.0, "step": 0, "tokens": 0, "acc": 0.0, "loss": 1.0}
    # interleaved: the reference trains before zhbert has finished
    first_ref = log.index(("reference", 1))
    assert first_ref < len(log) - 1 and ("zhbert", fast.steps) in log[first_ref:]


def test_race_stops_at_the_target_and_reports_the_ratio():
    clock, log = FakeClock(), []
    fast = fake_side("zhbert", clock, 1.0, lambda k: 0.05 * k, log)       # 0.30 after 6 steps
    slow = fake_side("reference", clock, 1.0, lambda k: 0.01 * k, log)    # 0.25 after 25 steps
    tta.race([fast, slow], budget_s=100.0, chunk_s=2.0, targets=[0.25, 0.30], clock=clock,
             log=lambda m: None)
    assert fast.stopped == slow.stopped == "target"
    assert fast.steps == 6 and slow.steps == 30
    hit = tta.first_reached(fast.curve, 0.25)
    assert (hit["step"], hit["train_s"]) == (6, 6.0)  # evaluated every 2 s: at 4 s (0.20), 6 s
    assert hit["interpolated_s"] == pytest.approx(5.0)
    sides = {"zhbert": fast, "reference": slow}
    assert tta.ratio_line(sides, 0.25) == f"ratio: {26 / 6:.2f}"  # reference's eval at 26 s


def test_ratio_is_a_lower_bound_when_the_reference_runs_out_of_budget():
    clock, log = FakeClock(), []
    fast = fake_side("zhbert", clock, 1.0, lambda k: 0.05 * k, log)
    slow = fake_side("reference", clock, 1.0, lambda k: 0.001 * k, log)
    tta.race([fast, slow], budget_s=12.0, chunk_s=3.0, targets=[0.25], clock=clock, log=lambda m: None)
    assert (fast.stopped, slow.stopped) == ("target", "budget")
    assert tta.ratio_line({"zhbert": fast, "reference": slow}, 0.25) == f"ratio: >= {12 / 6:.2f}"
    rows = tta.summary_rows({"zhbert": fast, "reference": slow}, [0.25], "fp32")
    assert rows[2][6] == "not reached in budget" and rows[1][6] == "6"
    assert rows[1][5] == "20"  # 80 of 100 positions real


def test_real_sides_train_and_race_on_synthetic_data(synthetic_data, one_thread):
    cfg = race_sides.run_config(steps=20, eval_sequences=32, overrides=[
        "model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
        "model.intermediate_size=64", "data.max_len=32", "data.warmup_len=16", "train.batch_size=8",
        "train.warmup_steps=3", "train.lr=3e-3", "train.precision=fp32"])
    batches = build_eval_set(synthetic_data, "validation", data_config(cfg), max_sequences=32)
    zh = race_sides.zhbert_side(cfg, synthetic_data, batches, "fp32")
    ref = race_sides.reference_side(cfg, synthetic_data, batches, "fp32", zh.extra["initial_state"])
    # same start: the reference holds zhbert's initial weights
    torch.testing.assert_close(ref.extra["model"].bert.embeddings.word_embeddings.weight,
                               zh.extra["initial_state"]["bert.embeddings.word_embeddings.weight"])
    assert ref.extra["lines"] > 1000 and 0 < ref.extra["padding_fraction"] < 1
    tta.race([zh, ref], budget_s=60.0, chunk_s=0.5, targets=[0.99], log=lambda m: None)
    for side in (zh, ref):
        assert side.stopped == "schedule end" and side.steps == 20
        assert 0 < side.tokens <= 20 * 8 * 32
        assert 0.0 <= side.curve[-1]["acc"] <= 1.0 and len(side.curve) >= 2
    # the same start scores the same; then both learn (the Zipf head of the synthetic text)
    assert zh.curve[0]["loss"] == pytest.approx(ref.curve[0]["loss"], rel=1e-5)
    assert zh.curve[-1]["loss"] < zh.curve[0]["loss"] - 0.05
    assert ref.curve[-1]["loss"] < ref.curve[0]["loss"] - 0.05


def test_recipe_ablation_variants_share_start_seed_and_eval_set(synthetic_data, one_thread):
    """Variants differ only by their overrides: the same overrides twice give the same curve
    (same initial weights, seed and eval set), and an override changes it."""
    from types import SimpleNamespace

    from benchmarks import recipe_ablation as ra

    assert ra.parse_variant("len 32: data.max_len=32, train.batch_size=16") == (
        "len 32", ["data.max_len=32", "train.batch_size=16"])
    assert ra.parse_variant("as shipped:") == ("as shipped", [])
    import argparse
    with pytest.raises(argparse.ArgumentTypeError, match="NAME:key=value"):
        ra.parse_variant("no colon")
    shape = ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
             "model.intermediate_size=64", "data.max_len=32", "train.batch_size=8",
             "train.warmup_steps=2", "train.lr=3e-3", "data.warmup_len=0"]
    args = SimpleNamespace(steps=20, until=6, eval_every=3, eval_sequences=32)
    cfg = race_sides.run_config(20, 32, shape)
    batches = build_eval_set(synthetic_data, "validation", data_config(cfg), max_sequences=32)
    runs = [ra.run_variant(name, shape + extra, args, synthetic_data, batches, "fp32",
                           log=lambda m: None)
            for name, extra in (("a", []), ("b", []), ("lr", ["train.lr=3e-2"]))]
    steps = [[p["step"] for p in r["curve"]] for r in runs]
    assert steps == [[0, 3, 6]] * 3
    losses = [[p["eval_mlm_loss"] for p in r["curve"]] for r in runs]
    assert losses[0] == losses[1]
    assert losses[2][0] == losses[0][0] and losses[2][1:] != losses[0][1:]
    assert "@3" in ra.table(runs) and "@6" in ra.table(runs)


def test_race_settings_reach_the_preset_both_sides_train():
    """`--set` changes the recipe of the race (the demo's, say); without it, the preset."""
    args = tta.parse_args(["--steps", "3000", "--set", "data.mask_prob=0.3",
                           "--set", "model.hidden_dropout=0"])
    cfg = tta.race_config(args, "fp32")
    assert (cfg.data.mask_prob, cfg.model.hidden_dropout, cfg.train.steps) == (0.3, 0.0, 3000)
    plain = tta.race_config(tta.parse_args([]), "fp32")
    assert (plain.data.mask_prob, plain.model.hidden_dropout) == (0.15, 0.1)
    assert plain.train.steps == 4000


def test_recipe_step_times_the_warm_up_length_then_the_full_length(synthetic_data, one_thread):
    """benchmarks.recipe_step: its first phase's timed steps fall in the length warm-up of
    its long schedule, its second phase trains at full length from the first step."""
    from benchmarks import recipe_step as rs
    from zhbert import train as zt

    shape = ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
             "model.intermediate_size=64", "data.max_len=32", "data.warmup_len=16",
             "train.batch_size=8", "data.warmup_len_fraction=0.5"]
    lengths = {}
    for name, overrides in rs.phases(shape).items():
        cfg = race_sides.run_config(rs.SCHEDULE, 32, overrides)
        batch = next(iter(zt.build_loader(cfg, synthetic_data)))
        lengths[name] = batch["input_ids"].shape[1]
    assert lengths == {"warm-up length": 16, "full length": 32}
    assert rs.seconds_per_step(shape, synthetic_data, "fp32", warmup=1, steps=2) > 0
