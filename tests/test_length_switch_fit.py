"""Where the law's fit starts after a sequence-length switch (runcurve.settled_from, RunCurve.start).

After the switch the held-out loss, scored at full length, first falls fast while the longer
positions are learned, then follows the lr. That fall is not the law's to fit."""

from pathlib import Path

import numpy as np
from scipy.special import expit

from zhbert.analysis.forecast import plan
from zhbert.analysis.plan_runs import load_run, truncated
from zhbert.analysis.runcurve import SETTLE_KEEP, RunCurve, settled_from
from zhbert.schedule import Schedule

DATA = Path(__file__).parent / "data"
SWITCH = 1000


def descent(steps):
    return 3.0 + 4.0 * (steps / 100.0) ** -0.3


def with_fall(steps):
    """A smooth descent, and after the switch a fall of 1.5 that halves every ~28 steps."""
    return descent(steps) + np.where(steps > SWITCH, 1.5 * np.exp(-(steps - SWITCH) / 40.0), 0.0)


def test_the_fall_after_the_switch_is_skipped():
    steps = np.arange(50, 2001, 50)
    # the drop from 1,050 to 1,100 is 11 times the median of the five drops after it, from
    # 1,100 to 1,150 4.7 times (above SETTLE_FACTOR, 4), from 1,150 to 1,200 2.3 times: settled
    assert settled_from(steps, with_fall(steps), SWITCH + 1) == 1150
    assert settled_from(steps, descent(steps), SWITCH + 1) == SWITCH + 1


def test_a_run_that_leaves_a_plateau_after_the_switch_keeps_every_point():
    """tiny-1000 and tiny-2000 switch while still on the plateau: the loss falls faster later,
    not sooner. A fixed skip cost their forecast of tiny-4000 nine points."""
    steps = np.arange(50, 2001, 50)
    loss = 6.0 - 2.0 * expit((steps - 1400) / 100.0)
    assert settled_from(steps, loss, SWITCH + 1) == SWITCH + 1


def test_few_points_after_the_switch_are_all_kept():
    steps = np.arange(50, SWITCH + 50 * (SETTLE_KEEP + 1), 50)  # SETTLE_KEEP points after it
    assert settled_from(steps, with_fall(steps), SWITCH + 1) == SWITCH + 1


def test_only_a_length_switch_moves_the_start():
    steps = np.arange(50, 2001, 50)
    no_switch = Schedule("cosine", 1e-3, 2000, 100)
    switch = Schedule("cosine", 1e-3, 2000, 100, short_fraction=0.5, short_weight=0.125)
    assert RunCurve("a", steps, with_fall(steps), no_switch, 101).start == 101
    assert RunCurve("b", steps, with_fall(steps), switch, SWITCH + 1).start == 1150


def test_the_demo_recipe_run_is_fitted_after_its_fall():
    """demo-2000 (length 16 for 1,000 steps): fitted from the switch the residual sd was
    0.27 and a 4,000-step run's 80% band 24-65% (delta method); from 1,150, 0.010."""
    run = load_run(DATA / "demo-2000")
    assert run.curve.fit_from == SWITCH + 1 and run.curve.start == 1150
    assert plan([run], n_boot=0).law.sigma < 0.05


def test_a_truncated_run_decides_on_its_own_points():
    """tiny-4000 switches at 800; up to 1,200 it has 8 points after the switch (fewer than
    SETTLE_KEEP) and keeps them all; the whole run skips its fall (start 900)."""
    run = load_run(DATA / "tiny-4000")
    assert run.curve.start == 900
    assert truncated(run, 1200).curve.start == run.curve.fit_from == 801
