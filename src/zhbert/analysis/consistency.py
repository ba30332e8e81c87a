"""Whether runs can share one law: notes for the planner (forecast.plan) to print.

A law fitted to several runs assumes one model, one data setup and one curve shape that
only the lr schedule bends. Runs that break that get a fit whose bands mean little, and
the numbers alone did not say so: a mixed fit gave L0 1e-13 and a floor of 91% accuracy
with no word but a dict dump; a 1,000-step demo-recipe run fitted with a 700-step
linear-schedule run still on the plateau gave residual sd 0.30 against 0.03 for either
alone, and forecast 8,000 steps at 75.7% (80%: 5.8-89.8%) where the first alone said 41.4%.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from zhbert.analysis.history import Meta
from zhbert.analysis.laws import fit_law
from zhbert.config import describe_differences
from zhbert.errors import UserError

if TYPE_CHECKING:
    from zhbert.analysis.plan_runs import RunData
    from zhbert.analysis.laws import LawFit

# what the runs of one law may differ in: the schedule the law reads (and the length
# warm-up, whose phase it leaves out), the seed, and how a run is executed or scored
LAW_MAY_VARY = frozenset({"train.steps", "train.lr", "train.warmup_steps", "train.schedule",
                          "train.min_lr_ratio", "train.decay_fraction", "train.seed",
                          "train.precision", "train.compile", "train.device", "train.max_nonfinite",
                          "data.warmup_len_fraction", "data.eval_sequences"})


def setup_warnings(runs: Sequence[RunData]) -> list[str]:
    """One line per run whose model or data settings differ from the first run's (a
    mixed fit gave L0 1e-13 and a floor of 91% accuracy with no word but a dict dump)."""
    out = []
    first = runs[0]
    for r in runs[1:]:
        a, b = first.setup.get("config"), r.setup.get("config")
        diffs = {} if a is None or b is None else {
            k: v for k, v in a.differences(b).items() if k not in LAW_MAY_VARY}
        what = [describe_differences(diffs, 5)] if diffs else []
        what += vocab_difference(first.setup.get("vocab"), r.setup.get("vocab"))
        if what:
            out.append(f"warning: {r.curve.name} differs from {first.curve.name} in "
                       f"{'; '.join(what)}: one "
                       "law assumes one model and one data setup, so its fit and bands mean little")
    out += _config_mix(runs)
    metas = [(r.curve.name, r.history.meta) for r in runs if r.history is not None]
    out += [line for line in (masking_warning(metas), masking_unknown_note(metas)) if line]
    if len({r.loss_metric for r in runs}) > 1:
        out.append("warning: the runs record different loss metrics ("
                   + ", ".join(sorted({r.loss_metric for r in runs})) + "); fitting them together")
    return out


def _config_mix(runs: Sequence[RunData]) -> list[str]:
    """Runs with a zhbert config beside runs without (the seed's JSON, a Trainer state, a
    CSV): fitted together with no word but "different loss metrics", though nothing says
    they share a model or data setup (the comparison above needs both configs)."""
    has = [r.curve.name for r in runs if r.setup.get("config") is not None]
    lacks = [r.curve.name for r in runs if r.setup.get("config") is None]
    if not has or not lacks:
        return []
    return [f"warning: {', '.join(lacks)} record{'s' * (len(lacks) == 1)} no zhbert config, "
            f"unlike {', '.join(has)}: their model and data setups cannot be compared, so one law "
            "over them means little; fit each kind on its own"]


def masking_warning(runs: list[tuple[str, Meta]]) -> str | None:
    """A line when the runs ((name, meta) pairs) recorded different masking rules (runs
    that recorded none are left out: their rule is not known): their held-out sets mask
    other slots, so a difference within the held-out intervals may be the masks."""
    rules = {name: m.masking[-1] for name, m in runs if m.masking and m.masking[-1] is not None}
    if len(set(rules.values())) < 2:
        return None
    return ("warning: the runs draw masks by different rules (" + ", ".join(
        f"{name}: {rule}" for name, rule in rules.items()) + "): their held-out sets mask other "
        "slots, so a difference within their 95% intervals (eval_mlm_acc_ci95) may be the "
        "masks, not the models")


def masking_unknown_note(runs: list[tuple[str, Meta]]) -> str | None:
    """A note (not a warning: nothing is known to differ) when some runs record a masking
    rule and others, older or foreign histories, record none: one law over them was fitted
    without a word, though their held-out sets may mask other slots."""
    rules = sorted({m.masking[-1] for _, m in runs if m.masking and m.masking[-1] is not None})
    unknown = [name for name, m in runs if not (m.masking and m.masking[-1] is not None)]
    if not rules or not unknown:
        return None
    return (f"{', '.join(unknown)} record{'s' * (len(unknown) == 1)} no masking rule (an older or "
            f"foreign history): whether {'it masks' if len(unknown) == 1 else 'they mask'} as the "
            f"others do ({', '.join(rules)}) is unknown, so a gap in held-out accuracy may be the masks")


def vocab_difference(a: dict | None, b: dict | None) -> list[str]:
    """The vocabularies of two runs (plan_runs.load_run's setup["vocab"]) apart, as a clause:
    the size, else the hash where both recorded one (the same size, other tokens). Another
    vocabulary is another task: its loss and accuracy are on other scales."""
    if not a or not b:
        return []
    if a["size"] != b["size"]:
        return [f"vocabulary: {a['size']:,} -> {b['size']:,} tokens"]
    if a["sha256"] and b["sha256"] and a["sha256"] != b["sha256"]:
        return [f"vocabulary: another vocab.txt of {a['size']:,} tokens (sha256 "
                f"{a['sha256'][:12]} -> {b['sha256'][:12]})"]
    return []


# together, the residual sd this many times the largest of the runs fitted one by one: the
# runs disagree (tiny-1000 + tiny-2000, one of them never off the plateau: 0.47 against
# 0.11; the demo recipe's runs of 1,000 and 2,000 steps: 0.038 against 0.031)
DISAGREE = 2.5


def alone_sigmas(fit: "LawFit", runs: Sequence["RunData"]) -> dict[str, float]:
    """Each run's residual sd under the law fitted to it alone (the joint fit's for one
    run; a run with too few points alone is left out): fitted once for ``disagreement``
    and ``phase_change_note``, which had each fitted every run again."""
    if len(runs) == 1:
        return {runs[0].curve.name: fit.sigma}
    alone = {}
    for r in runs:
        try:
            alone[r.curve.name] = fit_law([r.curve], fit.law, n_boot=0).sigma
        except UserError:  # too few points alone: nothing to compare with
            pass
    return alone


def disagreement(fit: "LawFit", runs: Sequence["RunData"], alone: dict[str, float]) -> list[str]:
    """A note when the runs fit one law much worse together than one by one (``alone``:
    ``alone_sigmas``)."""
    if len(runs) < 2 or not alone or fit.sigma <= DISAGREE * max(alone.values()):
        return []
    return [f"warning: the runs disagree under one law: residual sd {fit.sigma:.3f} fitted "
            f"together against {max(alone.values()):.3f} at most one by one; one may still be on a "
            "plateau (the law has no plateau term) or their setups differ, so expect wide "
            "bands, and compare with a forecast from the longest run alone"]


# A history without a zhbert config (CSV, Trainer state, TensorBoard, the seed's JSON) records
# no sequence-length warm-up, so the law is fitted from the end of the lr warm-up, inside the
# short-sequence phase whose held-out loss follows other dynamics: tiny-2000 exported as CSV
# read residual sd 0.588 against 0.029 from one point to the next (the run folder: 0.109,
# 41.1% at 4,000 steps, the CSV 49.3%), without a word. The ratio measured: that CSV 20; the
# seed's JSON 1.0, hf-tiny-bert 1.1, hf-small-bert 1.0; zhbert's own runs, not checked: 0.3
# (demo-1000) to 4.2 (cos-2000, which as a CSV would come within 16% of the note)
PHASE_RATIO = 5.0


def phase_change_note(runs: Sequence["RunData"], alone: dict[str, float]) -> str | None:
    """A note when the law, fitted to a foreign history alone, leaves residuals over
    PHASE_RATIO times the noise its fitted losses show from one point to the next (sd of the
    differences / sqrt 2): a curve the law follows leaves residuals of about that size. Each
    foreign run by its own fit: a joint fit's residuals measure how the runs disagree
    (``disagreement``), and hf-small-bert beside tiny-2000 read 31x for 1.0x alone
    (``alone``: ``alone_sigmas``)."""
    import numpy as np
    worst = None
    for r in (r for r in runs if not r.setup.get("config")):
        y = r.curve.fitted()[1]
        sigma = alone.get(r.curve.name)
        if len(y) <= 2 or sigma is None:
            continue
        noise = float(np.std(np.diff(y), ddof=1) / np.sqrt(2))
        if sigma > PHASE_RATIO * noise and (worst is None or sigma / noise > worst[0]):
            worst = (sigma / noise, sigma, noise, r.curve.name)
    if worst is None:
        return None
    ratio, sigma, noise, name = worst
    return (f"the law's residual sd {sigma:.3f} is {ratio:.0f}x the noise of {name}'s loss from one "
            f"point to the next ({noise:.3f}): the fit may span a phase change the file does not "
            "record (a sequence-length warm-up, or a plateau the run leaves), so its forecasts and "
            "bands may be far off; fit from a later step (there is no --fit-from: drop the rows "
            "before the change) and compare")
