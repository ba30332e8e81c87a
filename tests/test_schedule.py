"""zhbert.schedule: the one lr formula, for training and for the planner."""

import math

import numpy as np
import pytest

from zhbert.config import load_config
from zhbert.errors import UserError
from zhbert.schedule import Schedule, infer_schedule, lr_at, lr_curve


def _lr_before_the_move(step, cfg):
    """train.lr_at as it was before it moved here (the regression oracle)."""
    t = cfg.train
    if step <= t.warmup_steps:
        return t.lr * step / max(1, t.warmup_steps)
    progress = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
    floor = t.lr * t.min_lr_ratio
    if t.schedule == "cosine":
        return floor + (t.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if t.schedule == "linear":
        return floor + (t.lr - floor) * max(0.0, 1 - progress)
    return t.lr


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant"])
def test_lr_at_is_bit_identical_to_the_old_formula(kind):
    cfg = load_config("tiny", [f"train.schedule={kind}", "train.min_lr_ratio=0.1", "train.steps=777"])
    for step in range(0, 800):
        assert lr_at(step, cfg) == _lr_before_the_move(step, cfg)


def test_the_training_loop_asks_the_one_lr_formula():
    from zhbert import trainloop
    assert trainloop.lr_at is lr_at


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant", "wsd"])
def test_curve_matches_the_scalar_formula(kind):
    cfg = load_config("tiny", [f"train.schedule={kind}", "train.steps=1000"])
    steps = np.arange(0, 1100)
    np.testing.assert_allclose(lr_curve(cfg, steps), [lr_at(int(s), cfg) for s in steps],
                               rtol=1e-12, atol=1e-18)


def test_wsd_is_stable_then_decays_over_its_fraction():
    s = Schedule("wsd", 1.0, steps=1100, warmup=100, decay_fraction=0.2)
    assert s.at(50) == pytest.approx(0.5)
    assert s.at(100) == s.at(899) == 1.0          # stable until 80% of the 1,000 post-warm-up steps
    assert s.at(1000) == pytest.approx(0.5)      # halfway down the decay
    assert s.at(1100) == pytest.approx(0.0)


def test_config_hash_unchanged_for_existing_schedules():
    # the hashes the presets had before train.decay_fraction existed (resume guards on them)
    assert load_config("tiny").hash() == "b0236d6021b2bd9f"
    assert load_config("seed").hash() == "1afb3c4aeb070806"
    assert load_config("tiny", ["train.decay_fraction=0.5"]).hash() == "b0236d6021b2bd9f"
    wsd = load_config("tiny", ["train.schedule=wsd"])
    assert wsd.hash() != load_config("tiny", ["train.schedule=wsd", "train.decay_fraction=0.5"]).hash()


def test_bad_schedule_values_are_user_errors():
    with pytest.raises(UserError, match="unknown schedule"):
        Schedule("step", 1e-3, 100)
    with pytest.raises(UserError, match="steps > 0"):
        Schedule("cosine", 1e-3, 0)
    with pytest.raises(UserError, match="decay_fraction"):
        load_config("tiny", ["train.schedule=wsd", "train.decay_fraction=0"])


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant", "wsd"])
def test_infer_schedule_from_logged_lr(kind):
    truth = Schedule(kind, 5e-5, steps=100_000, warmup=2000, min_lr_ratio=0.0)
    steps = np.arange(100, 100_001, 100)
    got = infer_schedule(steps, truth.curve(steps))
    # a constant lr is also cosine with floor = peak: either name is the same curve
    assert got.kind == kind or kind == "constant" and np.ptp(got.curve(steps[steps > 2000])) == 0
    assert got.warmup == 2000 and got.peak == pytest.approx(5e-5) and got.steps == 100_000
    np.testing.assert_allclose(got.curve(steps), truth.curve(steps), atol=1e-12)


def test_stretched_keeps_the_kind_and_warmup():
    s = Schedule("cosine", 1e-3, 1000, 100).stretched(4000)
    assert (s.kind, s.steps, s.warmup, s.peak) == ("cosine", 4000, 100, 1e-3)
    assert Schedule("cosine", 1e-3, 1000, 100).stretched(4000, kind="wsd", peak=2e-3).kind == "wsd"
