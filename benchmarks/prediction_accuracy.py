"""How well does the schedule-aware planner predict runs it has not seen? (issue 16)

    python -m benchmarks.prediction_accuracy [--sims 200] [--make-hf]

Four figures, each beside the schedule-free families (curves.py) where they apply:

1. seed: the seed's 100K-step cosine history, fitted on steps <= 50,000; the mean
   training-batch MLM accuracy over steps 90,000-100,000 (target: within 1.0 point,
   the 80% interval covering it).
2. own runs (tests/data/tiny-*: `tiny` preset on the built-in corpus): the final held-out
   MLM accuracy of the longest run from the shorter run(s); and from the first half of
   the longest run, its end (target: within 1.5 points).
3. coverage: curves generated from the annealing law with AR(1) noise (phi 0.7) on the
   loss and the accuracy; how often the 80% / 95% intervals of the final accuracy cover
   the observed one (target: nominal within 5 points).
4. a history zhbert did not write: transformers' Trainer on a tiny BERT (tests/data/
   hf-tiny-bert/trainer_state.json, made offline by --make-hf), first half -> its end.
5. early cuts: tiny-2000, tiny-4000 and demo-2000 fitted up to 30%, 35%, ... 80% of their
   steps; how often the 80% / 95% intervals cover the last tenth's mean.

The fits take seconds; the JSON goes to benchmarks/out/prediction_accuracy-*.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import expit

from benchmarks import common
from zhbert.analysis.ar import ar1_noise
from zhbert.analysis.forecast import plan
from zhbert.analysis.laws import SPECS, Units, features
from zhbert.analysis.runcurve import RunCurve
from zhbert.analysis.plan_runs import RunData, load_run, truncated
from zhbert.analysis.run_backtest import backtest_runs
from zhbert.schedule import Schedule

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SHARED = Path(os.environ.get("ZHBERT_SHARED") or ROOT / ".." / "shared")
SEED = SHARED / "reference" / "seed_training_history_100k.json"
OUT = ROOT / "benchmarks" / "out"


# ----------------------------------------------------------------------------- 1. seed

def seed_figure(law: str = "lr_annealing") -> dict:
    from zhbert.analysis import backtest, load_history
    run = load_run(SEED)
    fit_part = truncated(run, 50_000)
    p = plan([fit_part], law)
    window = run.curve.steps[run.curve.steps >= 90_000]
    window = window[window > 90_000] if len(window) > 100 else window
    actual = float(np.mean(run.acc[np.isin(run.curve.steps, window)]))
    f = p.accuracy(run.curve.schedule, window, window=len(window))
    old = backtest(load_history(SEED), 50_000)
    families = {r.model: r.mean_error_window for r in old.rows if r.ok}
    return {"actual": actual, "law": law, "forecast": f.to_json(), "error": f.mean - actual,
            "covered80": f.covers(actual, 80), "covered95": f.covers(actual, 95),
            "window_points": len(window), "aic_choice": old.aic_best,
            "families_mean_error_window": families, "law_params": p.law.to_json()}


# ----------------------------------------------------------------------------- 2. own runs

RECIPES = ("tiny", "demo")   # tests/data/<recipe>-<steps>: the `tiny` preset; the demo's recipe


def own_runs(recipe: str = "tiny") -> list[RunData]:
    dirs = sorted(DATA.glob(f"{recipe}-*"), key=lambda d: int(d.name.split("-")[1]))
    return [load_run(d) for d in dirs if (d / "history.jsonl").exists()]


def own_figures(laws=("lr_annealing", "multi_power"), recipe: str = "tiny") -> dict:
    """From the shorter runs -> the longest; the longest's first half -> the rest. A run
    still short of its planned steps (this session's CPU did not finish it) is used as far
    as it got, and the figures say so: the halfway point is then between the first fitted
    step and the last one observed."""
    from zhbert.errors import UserError
    runs = own_runs(recipe)
    if not runs:
        return {"skipped": f"no runs under {DATA}"}
    longest, shorter = runs[-1], runs[:-1]
    last = int(longest.curve.steps[-1])
    complete = last >= longest.curve.schedule.steps
    until = longest.curve.schedule.steps // 2 if complete else (longest.curve.fit_from + last) // 2
    out = {"runs": {r.curve.name: {"planned": r.curve.schedule.steps, "observed": int(r.curve.steps[-1])}
                    for r in runs}}
    for name, args in (("from_shorter", (shorter, None)), ("first_half", ([], until))):
        try:
            if name == "from_shorter" and not shorter:
                raise UserError("only one run")
            out[name] = backtest_runs(longest, args[0], laws, until=args[1]).to_json()
        except UserError as why:
            out[name] = {"skipped": str(why)}
    return out


CUT_RUNS = ("tiny-2000", "tiny-4000", "demo-2000")


def cuts_figure(names=CUT_RUNS, fractions=np.arange(0.30, 0.801, 0.05), n_boot: int = 100) -> dict:
    """One run's first part -> its end, cut at 30%, 35%, ... 80% of its steps: how often the
    80% / 95% intervals of the last tenth's mean cover it, and the errors. Early cuts of a run
    still climbing are where one run's law errs most (laws.LawFit.loss_draws). Cuts with too
    few points after the warm-ups are left out and counted."""
    from zhbert.errors import UserError
    out = {}
    for name in names:
        if not (DATA / name / "history.jsonl").exists():
            continue
        run = load_run(DATA / name)
        last, rows, skipped = int(run.curve.steps[-1]), [], 0
        for frac in fractions:
            try:
                b = backtest_runs(run, [], until=int(frac * last), n_boot=n_boot)
            except UserError:
                skipped += 1
                continue
            m = b.rows[0]
            rows.append({"until": int(frac * last), "error": m["error_last_tenth"],
                         "interval80": m["interval80"], "covered80": m["covered80"],
                         "covered95": m["covered95"], "width80": m["interval80"][1] - m["interval80"][0]})
        out[name] = {"cuts": rows, "too_few_points": skipped,
                     "covered80": sum(r["covered80"] for r in rows),
                     "covered95": sum(r["covered95"] for r in rows),
                     # coverage alone rewards "0-100%": how wide the intervals were beside it
                     "width80": [round(r["width80"], 3) for r in rows],
                     "mean_abs_error": float(np.mean([abs(r["error"]) for r in rows])) if rows else None}
    return out


# ----------------------------------------------------------------------------- 3. coverage

TRUE = np.array([2.0, 1.5, 0.5, 0.8])
UNITS = Units(1e-3, 1000.0)
MAP = (1.7, -0.48)


def synthetic_run(n_steps: int, rng, phi: float, every: int = 50) -> RunData:
    """A run whose loss follows the annealing law; accuracy = the logistic map of the noisy
    loss plus its own noise; both noises AR(1) with ``phi``."""
    sched = Schedule("cosine", 1e-3, n_steps, 100)
    steps = np.arange(every, n_steps + 1, every)
    loss = SPECS["lr_annealing"].predict(TRUE, features(sched, steps, UNITS, "lr_annealing"))
    loss = loss + ar1_noise(len(steps), phi, 0.02, rng)
    acc = expit(MAP[0] + MAP[1] * loss) + ar1_noise(len(steps), phi, 0.003, rng)
    curve = RunCurve(f"sim{n_steps}", steps, loss, sched, fit_from=201)
    return RunData(curve, acc, "eval_mlm_loss", "eval_mlm_acc", "config", {}, None, None)


def coverage_figure(sims: int, phi: float = 0.7, seed: int = 0, n_boot: int = 100) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for name in ("two_runs_to_longer", "first_half_to_end"):
        hits80 = hits95 = 0
        errs = []
        for _ in range(sims):
            target = synthetic_run(4000 if name == "two_runs_to_longer" else 2000, rng, phi)
            if name == "two_runs_to_longer":
                fit_runs = [synthetic_run(1000, rng, phi), synthetic_run(2000, rng, phi)]
            else:
                fit_runs = [truncated(target, 1000)]
            p = plan(fit_runs, n_boot=n_boot)
            end = int(target.curve.steps[-1])
            f = p.accuracy(target.curve.schedule, [end])
            actual = float(target.acc[-1])
            hits80 += f.covers(actual, 80)
            hits95 += f.covers(actual, 95)
            errs.append(f.mean - actual)
        out[name] = {"sims": sims, "coverage80": hits80 / sims, "coverage95": hits95 / sims,
                     "mean_abs_error": float(np.mean(np.abs(errs))), "phi": phi, "n_boot": n_boot}
    return out


# ----------------------------------------------------------------------------- 4. HF Trainer

HF_DIR = DATA / "hf-tiny-bert"


HF_SHAPES = {  # name -> (hidden, layers, heads, intermediate, max_len, batch, peak lr, eval lines)
    "tiny-bert": (64, 2, 2, 128, 32, 32, 2e-3, 256),     # ends on the plateau (14% at 2,000 steps)
    "small-bert": (128, 2, 2, 512, 64, 64, 2e-3, 512),
}


def make_hf_history(data_dir: Path, steps: int = 200, out: Path = HF_DIR, shape: str = "tiny-bert") -> Path:
    """transformers' Trainer on a small BertForMaskedLM over the built-in corpus, line by line,
    cosine schedule, eval loss and accuracy every steps/20 (tiny-bert) or steps/40 steps;
    keeps only trainer_state.json."""
    import tempfile

    import torch
    from transformers import (BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling, Trainer,
                              TrainingArguments)

    from benchmarks.race_sides import LineDataset, hf_tokenizer
    from zhbert.corpus.text import iter_text
    from zhbert.datadir import open_data_dir

    torch.set_num_threads(1)
    dd = open_data_dir(data_dir)
    tok = hf_tokenizer(dd.vocab)

    hidden, layers, heads, inter, max_len, batch, lr, n_eval = HF_SHAPES[shape]

    def lines(split, n):
        got = [s for s in iter_text(dd, split) if s.strip()][:n]
        enc = tok(got, truncation=True, max_length=max_len, padding="max_length", return_special_tokens_mask=True)
        return LineDataset({k: enc[k] for k in ("input_ids", "attention_mask", "special_tokens_mask")})

    model = BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers,
                                       num_attention_heads=heads, intermediate_size=inter,
                                       max_position_embeddings=max_len))
    every = max(1, steps // (20 if shape == "tiny-bert" else 40))

    def metrics(pred):
        logits, labels = pred
        keep = labels != -100
        return {"accuracy": float((logits[keep] == labels[keep]).mean())}

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, max_steps=steps, per_device_train_batch_size=batch,
                                 learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=steps // 10,
                                 eval_strategy="steps", eval_steps=every, logging_steps=every, save_strategy="no",
                                 report_to=[], use_cpu=True, seed=0, dataloader_num_workers=0,
                                 per_device_eval_batch_size=64)
        tr = Trainer(model=model, args=args, train_dataset=lines("train", batch * steps),
                     eval_dataset=lines("validation", n_eval),
                     data_collator=DataCollatorForLanguageModeling(tok, mlm_probability=0.15, seed=0),
                     compute_metrics=metrics,
                     preprocess_logits_for_metrics=lambda logits, labels: logits.argmax(-1))
        tr.train()
        out.mkdir(parents=True, exist_ok=True)
        tr.state.save_to_json(str(out / "trainer_state.json"))
    return out / "trainer_state.json"


def hf_figure(laws=("lr_annealing", "multi_power"), shape: str = "tiny-bert") -> dict:
    path = DATA / f"hf-{shape}" / "trainer_state.json"
    if not path.exists():
        return {"skipped": f"{path} not made (run with --make-hf)"}
    run = load_run(path)
    return backtest_runs(run, [], laws, until=run.curve.schedule.steps // 2).to_json()


# ----------------------------------------------------------------------------- main

def _summary(res: dict) -> list[str]:
    lines = []
    s = res.get("seed")
    if s:
        f = s["forecast"]
        lines.append(f"1. seed, fit <= 50K, mean mlm_acc 90-100K: actual {s['actual'] * 100:.2f}%, "
                     f"law {f['mean'] * 100:.2f}% (error {s['error'] * 100:+.2f} points; 80% "
                     f"{f['interval80'][0] * 100:.2f}-{f['interval80'][1] * 100:.2f}%, "
                     f"{'covers' if s['covered80'] else 'misses'}); AIC choice {s['aic_choice']} "
                     f"{s['families_mean_error_window'][s['aic_choice']] * 100:+.2f} points")
    for key, title in (("own", "2. own tiny runs"), ("own_demo", "2'. own runs, the demo's recipe"),
                       ("hf", "4. HF Trainer history"), ("hf_small", "4'. HF Trainer history")):
        part = res.get(key, {})
        for sub, b in ([("", part)] if key.startswith("hf") else [(k, part.get(k)) for k in ("from_shorter", "first_half")]):
            if not b or "methods" not in b:
                continue
            lines.append(f"{title} {sub}: predict {b['predict']} from {', '.join(b['from'])}; "
                         f"actual final {b['actual_final'] * 100:.2f}%")
            lines += [f"   {m['method']:<40} final error {m['error_final'] * 100:+6.2f} points"
                      + ("" if m["covered80"] is None else
                         f", 80% {'covers' if m['covered80'] else 'misses'}") for m in b["methods"]]
    for name, c in res.get("cuts", {}).items():
        lines.append(f"5. {name} cut at 30-80% -> its last tenth ({len(c['cuts'])} cuts): 80% covers "
                     f"{c['covered80']}, 95% covers {c['covered95']}, mean |error| "
                     f"{(c['mean_abs_error'] or 0) * 100:.1f} points; 80% widths "
                     + " ".join(f"{w * 100:.0f}" for w in c["width80"]) + " points")
    for name, c in res.get("coverage", {}).items():
        lines.append(f"3. coverage {name} ({c['sims']} sims, AR(1) phi {c['phi']}): "
                     f"80% -> {c['coverage80'] * 100:.1f}%, 95% -> {c['coverage95'] * 100:.1f}%")
    return lines


@common.entry("prediction_accuracy")
def main(argv: list[str] | None = None) -> int:
    from zhbert import argtypes

    ap = common.Parser("prediction_accuracy", __doc__)
    ap.add_argument("--sims", type=argtypes.count(0), default=200,
                    help="generated curves per coverage scenario (0: no coverage figure)")
    ap.add_argument("--boot", type=argtypes.boot_count, default=100,
                    help="bootstrap refits per coverage fit (0: the delta method)")
    ap.add_argument("--make-hf", metavar="DATA_DIR", help="first make the HF Trainer history from "
                    "this data directory (`zhbert prepare builtin`)")
    ap.add_argument("--hf-shape", choices=sorted(HF_SHAPES), default="tiny-bert")
    ap.add_argument("--hf-steps", type=argtypes.count(1), default=2000, help="its steps (200 leaves it on the "
                    "unigram plateau, 3%% accuracy: nothing to forecast)")
    args = ap.parse_args(argv)
    if args.make_hf and not (Path(args.make_hf) / "manifest.json").exists():
        ap.error(f"--make-hf {args.make_hf}: not a zhbert data directory (no manifest.json)")
    if args.make_hf:
        make_hf_history(Path(args.make_hf), args.hf_steps, DATA / f"hf-{args.hf_shape}", args.hf_shape)
    started = time.time()
    res = {"load_start": os.getloadavg()}
    if SEED.exists():
        res["seed"] = seed_figure()
    res["own"] = own_figures()
    res["own_demo"] = own_figures(recipe="demo")
    res["hf"] = hf_figure()
    res["hf_small"] = hf_figure(shape="small-bert")
    res["cuts"] = cuts_figure(n_boot=args.boot)
    if args.sims > 0:
        res["coverage"] = coverage_figure(args.sims, n_boot=args.boot)
    res["seconds"] = time.time() - started
    res["load_end"] = os.getloadavg()
    print("\n".join(_summary(res)))
    OUT.mkdir(exist_ok=True)
    path = OUT / f"prediction_accuracy-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(res, indent=2, default=float))
    print(f"({res['seconds']:.0f} s; JSON {path.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
