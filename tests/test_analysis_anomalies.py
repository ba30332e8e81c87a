"""Each anomaly detector on a constructed history, and a clean run that raises nothing."""

import json

import numpy as np

from zhbert.analysis.anomalies import (at_chance, detect, divergence, nonfinite, plateaus, spikes,
                                       train_eval_gap)
from zhbert.analysis.history import History, Meta, Series

STEPS = np.arange(1, 301) * 100.0
RNG = np.random.default_rng(0)


def _s(name, y, steps=STEPS):
    return Series(name, np.asarray(steps, float), np.asarray(y, float))


def _history(**series):
    return History({k: _s(k, v) for k, v in series.items()}, Meta("test", "-", "run"), "mlm_acc", "test")


def _healthy_loss():
    return 2 + 6 * (STEPS / 100) ** -0.5 + RNG.normal(0, 0.02, len(STEPS))


def test_loss_spike_found_with_its_step():
    loss = _healthy_loss()
    loss[150] += 3.0
    found = spikes(_s("loss", loss))
    assert [(a.kind, a.start, a.end) for a in found] == [("spike", STEPS[150], STEPS[150])]
    assert spikes(_s("loss", _healthy_loss())) == []


def test_nonfinite_values_and_events():
    loss = _healthy_loss()
    loss[10:13] = np.nan
    h = History({"loss": _s("loss", loss)},
                Meta("zhbert", "-", "run", events=({"type": "event", "step": 1100, "kind": "nonfinite_loss",
                                                    "message": "skipped step"},)), "loss", "test")
    found = nonfinite(h)
    assert (found[0].start, found[0].end, found[0].severity) == (STEPS[10], STEPS[12], "error")
    assert found[1].start == 1100 and "skipped step" in found[1].explanation


def test_plateau_only_while_lr_positive():
    acc = np.concatenate([np.linspace(0.1, 0.5, 150), np.full(150, 0.5)]) + RNG.normal(0, 0.002, 300)
    found = plateaus(_s("mlm_acc", acc), _s("lr", np.full(300, 1e-4)))
    assert len(found) == 1 and found[0].start >= STEPS[120] and found[0].end == STEPS[-1]
    assert plateaus(_s("mlm_acc", acc), _s("lr", np.r_[np.full(150, 1e-4), np.zeros(150)])) == []
    assert plateaus(_s("mlm_acc", np.linspace(0.1, 0.6, 300))) == []


def test_the_tail_of_a_decayed_lr_is_no_plateau():
    """A curve that flattens as a cosine schedule decays to 0 (the demo's analysis: "plateau
    at steps 1,550-2,000" of 2,024) is the schedule, not an anomaly; the same flat stretch
    at a constant lr still is."""
    t = np.arange(300) / 299
    acc = 0.1 + 0.4 * (1 - np.exp(-6 * t)) + np.random.default_rng(5).normal(0, 0.002, 300)
    cosine = 0.5 * (1 + np.cos(np.pi * t)) * 1e-3
    assert plateaus(_s("mlm_acc", acc), _s("lr", cosine)) == []
    found = plateaus(_s("mlm_acc", acc), _s("lr", np.full(300, 1e-3)))
    assert len(found) == 1 and "above 10% of its peak" in found[0].explanation
    alone = plateaus(_s("mlm_acc", acc))  # no lr logged: nothing said about it
    assert len(alone) == 1 and "learning rate" not in alone[0].explanation


def test_divergence_of_rising_loss():
    loss = _healthy_loss()
    loss[200:] += np.linspace(0, 2, 100)
    found = divergence(_s("loss", loss))
    assert found and found[0].kind == "divergence" and found[0].start >= STEPS[170]
    assert divergence(_s("loss", _healthy_loss())) == []


def test_nsp_at_chance_and_learning_nsp():
    assert at_chance(_s("nsp_acc", 0.5 + RNG.normal(0, 0.02, 300)))[0].severity == "error"
    assert at_chance(_s("nsp_acc", np.linspace(0.5, 0.9, 300))) == []


def test_growing_train_eval_gap():
    train = np.linspace(0.2, 0.8, 300)
    eval_steps = STEPS[::30]
    held = _s("eval_mlm_acc", np.linspace(0.2, 0.5, len(eval_steps)), eval_steps)
    found = train_eval_gap(_s("mlm_acc", train), held)
    # last eval at step 27,100: train 0.2 + 0.6 * 270/299 = 0.742 vs held-out 0.5
    assert found and found[0].kind == "gap" and "0.242" in found[0].explanation
    same = _s("eval_mlm_acc", train[::30], eval_steps)
    assert train_eval_gap(_s("mlm_acc", train), same) == []


def test_detect_clean_run_is_quiet_and_json():
    acc = 0.7 - 0.5 * (STEPS / 100) ** -0.5 + RNG.normal(0, 0.003, 300)
    h = _history(mlm_acc=acc, loss=_healthy_loss(), lr=np.full(300, 1e-4),
                 nsp_acc=np.linspace(0.5, 0.95, 300))
    found = detect(h)
    assert [a.kind for a in found if a.severity != "info"] == []
    json.dumps([a.to_json() for a in found])


def test_the_sequence_length_switch_is_not_a_spike():
    """zhbert's length warm-up: training loss steps up where batches go from short to full
    length, and the full-length phase is noisier. With the switch as a break, neither is a
    spike (the demo's analysis reported an "error" spike there and four "warning" ones
    after it; since the noise scale is taken around each point, it no longer does even
    without the break); a real spike in the full-length phase still is."""
    short = 5 + 2 * (STEPS[:150] / 100) ** -0.5 + RNG.normal(0, 0.002, 150)  # smooth
    full = 5.8 + 2 * (STEPS[150:] / 100) ** -0.5 + RNG.normal(0, 0.02, 150)  # up 0.8, noisier
    loss = _s("loss", np.r_[short, full])
    assert spikes(loss, breaks=(int(STEPS[149]),)) == []
    real = np.r_[short, full]
    real[220] += 0.5
    found = spikes(_s("loss", real), breaks=(int(STEPS[149]),))
    assert [(a.start, a.end) for a in found] == [(STEPS[220], STEPS[220])]


def test_a_switch_s_transient_and_small_bumps_on_a_smooth_loss_are_no_spikes():
    """The demo's analysis (a newcomer's run) said "error: spike in loss at steps 850-890",
    the fall after its switch at 838 (a train record at 840 mixing both lengths), and
    "error" spikes of 0.02-0.1 in a smooth falling loss of 5.4 in the short phase. Neither is one: the
    first half window after a switch is not judged, and a spike rises SPIKE_MIN_RISE (3%)
    above its rolling median. A real spike in either phase still is one."""
    steps = np.arange(10, 1510, 10.0)
    short = 5 + 0.5 * np.exp(-steps[:84] / 3000) + np.random.default_rng(1).normal(0, 0.01, 84)
    short[38] += 0.1  # step 390: 2% up, robust z ~10
    after = [4.715, 5.411, 5.368, 5.27, 5.216, 5.034, 4.914, 4.637, 4.48, 4.468]
    tail = 4.46 - 0.3 * (1 - np.exp(-(steps[94:] - 940) / 300))
    loss = np.r_[short, after, tail + np.random.default_rng(2).normal(0, 0.01, len(tail))]
    switch = (838,)
    assert spikes(_s("loss", loss, steps), breaks=switch) == []
    loss[40] += 0.4  # step 410: 8% up, in the short phase
    loss[120] += 0.4  # step 1,210: in the full phase
    found = spikes(_s("loss", loss, steps), breaks=switch)
    assert [(a.start, a.end) for a in found] == [(410, 410), (1210, 1210)]


def test_the_sequence_length_switch_is_no_plateau():
    """The loss steps up at the switch to full length: a window across it did not fall, so
    the demo's analysis reported a plateau (steps 500-780, the switch at ~730). With the
    switch as a break it is not; a real plateau after it still is. (The step up is no
    divergence either: that test's autocorrelation-aware slope does not call it one.)"""
    rng = np.random.default_rng(7)  # not the module's RNG: the other tests' draws stay theirs
    i = np.arange(150)
    short = 8 - 3 * i / 150 + rng.normal(0, 0.01, 150)  # 8 -> 5 on short sequences
    full = 5.8 - 1.8 * i / 150 + rng.normal(0, 0.01, 150)  # up 0.8 at the switch, then falling
    loss, switch = _s("loss", np.r_[short, full]), (int(STEPS[149]),)
    assert plateaus(loss)  # what the switch looked like without the break
    assert plateaus(loss, breaks=switch) == [] and divergence(loss) == []
    flat = np.r_[short, full[:50], full[50] + rng.normal(0, 0.01, 100)]
    found = plateaus(_s("loss", flat), breaks=switch)
    assert found and all(a.start > STEPS[149] for a in found)


def test_a_zhbert_history_knows_its_length_switch(tmp_path):
    """Meta.regimes comes from the run's config (Schedule.short_steps), and detect() uses it."""
    from zhbert.analysis.history import load_zhbert
    from zhbert.config import load_config

    def write(name, cfg):
        d = tmp_path / name
        d.mkdir()
        recs = [{"type": "header", "run": name, **({"config": cfg.to_dict()} if cfg else {})}]
        recs += [{"type": "train", "step": s, "loss": 7.0 - s / 1000} for s in range(10, 1001, 10)]
        (d / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        return load_zhbert(d, "loss")

    cfg = load_config("tiny", ["train.steps=1000", "data.warmup_len_fraction=0.5"])
    assert write("switch", cfg).meta.regimes == (500,)
    assert write("none", load_config("tiny", ["train.steps=1000", "data.warmup_len=0"])).meta.regimes == ()
    assert write("no-config", None).meta.regimes == ()


def test_a_loss_that_gets_noisier_within_a_stretch_has_no_spikes_but_a_real_one():
    """A loss quiet on its plateau and noisier once it falls, with no batch change between:
    measured against the quiet part's noise, the normal bumps of the rest read as spikes
    (the 2-layer demo's short phase: eleven, two "error", for rises of 0.05-0.1). The noise
    scale is now taken around each point; a real spike in the noisy part is still one."""
    rng = np.random.default_rng(3)
    quiet = 5 + 2 * (STEPS[:150] / 100) ** -0.5 + rng.normal(0, 0.002, 150)
    noisy = 4.8 + 2 * (STEPS[150:] / 100) ** -0.5 + rng.normal(0, 0.03, 150)
    loss = np.r_[quiet, noisy]
    assert spikes(_s("loss", loss)) == []
    loss[230] += 0.6
    assert [(a.start, a.end) for a in spikes(_s("loss", loss))] == [(STEPS[230], STEPS[230])]


def test_a_noisy_held_out_accuracy_still_rising_is_no_plateau():
    """The demo's held-out accuracy (256 sequences, ~4,000 masked slots: sd ~0.8 points) rose
    0.4 points over one 10-point window, 36.1 -> 36.5%, and analyze called it a plateau; the
    gain is now judged against the noise of the two means it is read from. A flat curve with
    the same noise still is one."""
    rng = np.random.default_rng(11)
    steps = np.arange(50, 2550, 50.0)
    noise = rng.normal(0, 0.008, len(steps))
    rising = 0.30 + 0.08 * steps / steps[-1] + noise   # +0.8 points per 500 steps
    lr = _s("lr", np.full(len(steps), 1e-3), steps)
    assert plateaus(_s("eval_mlm_acc", rising, steps), lr) == []
    flat = 0.36 + noise
    assert plateaus(_s("eval_mlm_acc", flat, steps), lr)


def test_the_accuracy_across_the_switch_is_no_plateau():
    """detect() gave the losses the length switch as a break but not the held-out accuracy,
    which drops at the switch and climbs back: a window across it read as a plateau."""
    rng = np.random.default_rng(4)
    pre = np.linspace(0.10, 0.30, 150)
    post = 0.20 + 0.001 * np.arange(150)  # 0.20 at the switch, back past 0.30 by its end
    acc = np.r_[pre, post] + rng.normal(0, 0.002, 300)
    meta = Meta("test", "-", "run", regimes=(int(STEPS[149]),))
    h = History({"mlm_acc": _s("mlm_acc", acc)}, meta, "mlm_acc", "test")
    assert [a for a in detect(h) if a.kind == "plateau"] == []
    assert plateaus(_s("mlm_acc", acc))  # without the break: the window across it
