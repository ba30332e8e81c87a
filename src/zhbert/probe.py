"""`zhbert probe`: does held-out MLM accuracy predict downstream accuracy?

For each selected checkpoint, train a classifier on a labelled task and record
its test accuracy (Wilson 95% interval) in RUN_DIR/probe.jsonl, with every setting it
depends on (``result_key``: the task's content, mode, seed, training size, epochs, lr);
a rerun reuses only a result whose settings all match:

- fine-tune (default): the whole network plus a linear head on the pooler
  output (HF's BertForSequenceClassification; [CLS]'s hidden state for an
  "mlm"-only model, which has no pooler), AdamW, linear decay, a few epochs;
- --linear: the network frozen; a logistic regression on the same features,
  fitted with L-BFGS (the classic probe of what a representation already holds).

Tasks: the builtin sentiment reserve (DATA_DIR/downstream/sentiment.jsonl,
reviews that never entered pretraining) or --task-file, a CSV/TSV/JSONL read by
zhbert.tables (text,label or text_a,text_b,label, or the columns named with
--text-column and co.; pairs -> [CLS] a [SEP] b [SEP]; empty rows skipped and
counted) and an optional split column (train/test; otherwise a fixed seeded
80/20 split).

Then every checkpoint probed with these settings is joined with its MLM accuracy
from checkpoint_eval.jsonl, all at one `zhbert eval` setting (evaluating any that are
missing), and the relation is reported (zhbert.probe_study): Pearson r (Fisher-z 95%
CI), Spearman rho (Fieller's 95% CI), and a plot in RUN_DIR/probe: probe_vs_mlm.png
for --task sentiment at the default settings, probe_vs_mlm-TASK-MODE-HASH.png for
any other. The points are checkpoints of one run, so they are not independent draws:
read the intervals as descriptive.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from zhbert import argtypes
from zhbert.errors import UserError
from zhbert.probe_study import (DEFAULT_NAME, Point, choose_eval_setting, describe_mlm_eval, join,
                                mlm_eval_summary, plot_probe_vs_mlm, relate, study_name)
from zhbert.run import PROBE_DIR, PROBE_RESULTS as RESULTS
MAX_LEN = 128
DEFAULT_TASK = "sentiment"  # the README's `zhbert probe RUN --task sentiment`: study DEFAULT_NAME

Example = tuple[str, str | None, int]  # text_a, text_b (or None), label index


@dataclass(frozen=True)
class Task:
    name: str
    labels: tuple[str, ...]   # label index -> original label (as text)
    train: tuple[Example, ...]
    test: tuple[Example, ...]


@dataclass(frozen=True)
class ProbeSettings:
    linear: bool = False
    epochs: int = 3
    max_train: int = 2000
    batch_size: int = 32
    lr: float = 1e-4
    seed: int = 0

    @property
    def mode(self) -> str:
        return "linear" if self.linear else "finetune"


def task_fingerprint(task: Task) -> str:
    """A hash of the task's labels, examples and train/test split: a task file edited under
    the same name (or split by another --seed) is another task."""
    import hashlib
    import json
    text = json.dumps([task.labels, task.train, task.test], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def result_key(task: Task, s: ProbeSettings) -> dict[str, Any]:
    """Everything a probe's accuracy depends on besides the checkpoint, recorded with it; a
    result is reused only where all of it matches. Keyed by (step, task, mode) alone, a
    rerun with another --lr, --epochs, --max-train or --seed reprinted the old accuracy as if
    new. The linear probe has no epochs or learning rate: None, so changing them reuses it."""
    finetune = not s.linear
    return {"task": task.name, "mode": s.mode, "task_sha256": task_fingerprint(task),
            "n_train": min(s.max_train, len(task.train)), "seed": s.seed,
            "batch_size": s.batch_size, "epochs": s.epochs if finetune else None,
            "lr": s.lr if finetune else None}


def _matches(record: dict[str, Any], key: dict[str, Any]) -> bool:
    if "task_sha256" not in record:  # from before the settings were kept: see _legacy
        record = {**_legacy(key), **record}
    return all(record.get(k) == v for k, v in key.items())


def _results(run_dir: Path, key: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's probe results of ``key`` (result_key), in the order written."""
    from zhbert.run import read_results
    return [r for r in read_results(run_dir / RESULTS) if _matches(r, key)]


def _legacy(key: dict[str, Any]) -> dict[str, Any]:
    """What a record from before the settings were kept (task, mode, n_train, epochs alone)
    is taken to have used: the defaults, as most runs did; re-fine-tuning every checkpoint
    without a word, and dropping its points from the relation, cost more than that doubt."""
    d = ProbeSettings()
    return {"task_sha256": key["task_sha256"], "seed": d.seed, "batch_size": d.batch_size,
            "lr": None if key["lr"] is None else d.lr}


# ----------------------------------------------------------------------------- tasks

def _label_order(labels: set[str]) -> tuple[str, ...]:
    try:
        return tuple(sorted(labels, key=int))  # 0, 1, 2, 10 numerically
    except ValueError:
        return tuple(sorted(labels))


def load_task_file(path: str | Path, name: str | None = None, seed: int = 0, **columns) -> Task:
    """A labelled task read by ``tables.read_table`` (``columns``: its column names and
    ``strict``); rows without a split column get a fixed seeded 80/20 train/test split."""
    from zhbert.tables import read_table

    path = Path(path)
    rows = read_table(path, what="task file", **columns).rows
    if not rows:
        raise UserError(f"task file {path} has no usable rows")
    examples = [(r.text, r.pair, r.label) for r in rows]
    labels = _label_order({lab for _, _, lab in examples})
    if len(labels) < 2:
        raise UserError(f"task file {path} has one class only ({labels[0]!r}); a classifier "
                        "needs at least two labels")
    index = {lab: i for i, lab in enumerate(labels)}
    items = [(a, b, index[lab]) for a, b, lab in examples]
    if any("split" in r.extra for r in rows):
        splits = [r.extra.get("split", "").strip().lower() for r in rows]
        bad = sorted(set(splits) - {"train", "test"})
        if bad:
            raise UserError(f"task file {path}: split must be train or test, found {bad[:3]}")
        train = [x for x, s in zip(items, splits) if s == "train"]
        test = [x for x, s in zip(items, splits) if s == "test"]
    else:
        order = np.random.default_rng(seed).permutation(len(items))
        cut = int(round(0.8 * len(items)))
        train, test = [items[i] for i in order[:cut]], [items[i] for i in order[cut:]]
    if not train or not test:
        raise UserError(f"task file {path} needs both train and test examples "
                        f"(has {len(train)} train, {len(test)} test)")
    return Task(name or path.name, labels, tuple(train), tuple(test))


def builtin_task(name: str, data_dir: Path) -> Task:
    path = data_dir / "downstream" / f"{name}.jsonl"
    if not path.is_file():
        raise UserError(f"{path} not found: the builtin {name} task is written by "
                        "`zhbert prepare builtin`; use a data dir made from it, or --task-file")
    return load_task_file(path, name)


# ----------------------------------------------------------------------------- encoding

def encode_example(vocab, a: str, b: str | None, max_len: int) -> tuple[list[int], list[int]]:
    """([CLS] a [SEP] (b [SEP]), token types), cut to ``max_len`` as BERT cuts pairs."""
    from zhbert.data import truncate_lengths
    ia, ib = vocab.encode(a), vocab.encode(b) if b else []
    if ib:
        la, lb = truncate_lengths(len(ia), len(ib), max_len - 3)
        ids = [vocab.cls_id] + ia[:la] + [vocab.sep_id] + ib[:lb] + [vocab.sep_id]
        return ids, [0] * (la + 2) + [1] * (lb + 1)
    ids = [vocab.cls_id] + ia[:max_len - 2] + [vocab.sep_id]
    return ids, [0] * len(ids)


def make_batches(vocab, examples: Sequence[Example], max_len: int, batch_size: int,
                 order: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Padded batches: input_ids, token_type_ids, attention_mask (B, T), labels (B,)."""
    import torch
    order = np.arange(len(examples)) if order is None else order
    batches = []
    for i in range(0, len(order), batch_size):
        enc = [encode_example(vocab, *examples[j][:2], max_len) for j in order[i:i + batch_size]]
        T = max(len(ids) for ids, _ in enc)
        ids = torch.zeros(len(enc), T, dtype=torch.long)
        types = torch.zeros_like(ids)
        for r, (x, t) in enumerate(enc):
            ids[r, :len(x)], types[r, :len(t)] = torch.tensor(x), torch.tensor(t)
        labels = torch.tensor([examples[j][2] for j in order[i:i + batch_size]])
        batches.append({"input_ids": ids, "token_type_ids": types, "attention_mask": ids != 0,
                        "labels": labels})
    return batches


# ----------------------------------------------------------------------------- models

def features(model, batch: dict, device) -> "torch.Tensor":
    """(B, C): the pooler output, or [CLS]'s hidden state for a model without a pooler."""
    hidden = model.encode(batch["input_ids"].to(device), batch["token_type_ids"].to(device),
                          batch["attention_mask"].to(device))  # (B, T, C)
    return model.bert.pooler(hidden) if hasattr(model.bert, "pooler") else hidden[:, 0]


def finetune(model, n_classes: int, train: list[dict], s: ProbeSettings, device):
    """Fine-tune ``model`` with a new linear head; returns predict(batch) -> (B,) labels."""
    import torch
    torch.manual_seed(s.seed)
    head = torch.nn.Linear(model.config.hidden_size, n_classes).to(device)
    drop = torch.nn.Dropout(model.config.hidden_dropout)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=0.01)
    total = max(1, s.epochs * len(train))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min((i + 1) / (0.1 * total), 1.0)
                                              * max(0.0, 1 - i / total))  # 10% warm-up, linear decay
    model.train()
    rng = np.random.default_rng(s.seed)
    for _ in range(s.epochs):
        for k in rng.permutation(len(train)):
            batch = train[k]
            loss = torch.nn.functional.cross_entropy(head(drop(features(model, batch, device))),
                                                     batch["labels"].to(device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
    model.eval()
    return lambda batch: head(features(model, batch, device)).argmax(-1)


def linear_probe(model, n_classes: int, train: list[dict], s: ProbeSettings, device, l2: float = 1e-3):
    """Logistic regression on frozen, standardised features (L-BFGS, L2 penalty)."""
    import torch
    with torch.inference_mode():
        x = torch.cat([features(model, b, device).float() for b in train])
    y = torch.cat([b["labels"] for b in train]).to(device)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x = ((x - mean) / std).clone()  # leave inference mode: the head is trained on these
    torch.manual_seed(s.seed)
    head = torch.nn.Linear(x.shape[1], n_classes).to(device)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), y) + l2 * head.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lambda batch: head((features(model, batch, device).float() - mean) / std).argmax(-1)


def probe_checkpoint(model, vocab, task: Task, s: ProbeSettings, max_len: int, device) -> dict[str, Any]:
    """Train on the task's (capped) train split; accuracy on its test split."""
    import torch
    from zhbert.evaluate import wilson_interval
    rng = np.random.default_rng(s.seed)
    pick = rng.permutation(len(task.train))[:s.max_train]
    train = make_batches(vocab, task.train, max_len, s.batch_size, pick)
    test = make_batches(vocab, task.test, max_len, 128)
    fit = linear_probe if s.linear else finetune
    predict = fit(model, len(task.labels), train, s, device)
    correct = 0
    with torch.inference_mode():
        for b in test:
            correct += int((predict(b).cpu() == b["labels"]).sum())
    n = len(task.test)
    return {"accuracy": correct / n, "ci95": wilson_interval(correct, n), "n_test": n,
            "n_train": len(pick)}


# ----------------------------------------------------------------------------- runs

def probe_run(run_dir: str | Path, task: Task | str, settings: ProbeSettings = ProbeSettings(),
              step: int | None = None, all_checkpoints: bool = False, device=None,
              log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Probe the selected checkpoints not yet in probe.jsonl; return the new records."""
    from zhbert.checkpoint import CheckpointGone, skip_note
    from zhbert.run import (append_result, default_device, load_run_checkpoint, open_run,
                            open_run_data, select_checkpoints, state_tokens)
    from zhbert.runlock import WriterLock, lock_path
    run = open_run(run_dir)
    vocab = open_run_data(run).vocab
    task = builtin_task(task, run.data_dir) if isinstance(task, str) else task
    key = result_key(task, settings)
    out = run.path / RESULTS
    with WriterLock(lock_path(out), "zhbert probe"):  # one writer of probe.jsonl at a time
        done = {r.get("step") for r in _results(run.path, key)}
        refs = [r for r in select_checkpoints(run.path, step, all_checkpoints) if r.step not in done]
        device = device or default_device()
        max_len = min(MAX_LEN, run.cfg.data.max_len)  # positions past the pretraining length are untrained
        records = []
        for ref in refs:
            try:
                model, state = load_run_checkpoint(run, ref, device)
            except CheckpointGone:  # retention of a run still training deleted it: as eval does
                print(skip_note(ref.path, "gone"), file=sys.stderr)
                continue
            result = probe_checkpoint(model, vocab, task, settings, max_len, device)
            rec = {"step": ref.step, "tokens": state_tokens(state), **key, **result}
            append_result(out, rec)
            records.append(rec)
            lo, hi = rec["ci95"]
            log(f"step {ref.step:>8}  {task.name} ({settings.mode})  accuracy {rec['accuracy']:.4f} "
                f"[{lo:.4f}, {hi:.4f}]  n_test {rec['n_test']}")
    return records


# ----------------------------------------------------------------------------- relation

def _evaluate(run_dir: Path, steps: set[int], cap: int, log: Callable[[str], None]) -> None:
    """`zhbert eval` of ``steps`` at ``cap`` sequences, where their checkpoints are still on
    disk (one deleted by keep_last is left out and named by report_relation, not an error)."""
    from zhbert.checkpoint import list_checkpoints
    from zhbert.evaluate import evaluate_checkpoints
    todo = sorted(steps & {r.step for r in list_checkpoints(run_dir)})
    if todo:
        log(f"evaluating step(s) {', '.join(map(str, todo))} on validation at "
            f"--max-sequences {cap:,}")
    for step in todo:
        evaluate_checkpoints(run_dir, step=step, max_sequences=cap, log=lambda m: None)


def mlm_figures(run_dir: Path, steps: set[int], log: Callable[[str], None] = print
                ) -> tuple[int, dict[int, dict[str, Any]]]:
    """(cap, step -> record): the probed steps' validation MLM records, all from one `zhbert
    eval` sequence cap (probe_study.choose_eval_setting). A step never evaluated gets the
    run's own eval set first, as before; one the chosen cap lacks is evaluated at it."""
    from zhbert.run import EVAL_RESULTS, evals_by_setting, open_run, read_results
    default_cap = open_run(run_dir).cfg.data.eval_sequences

    def by_cap() -> dict[int, dict[int, dict[str, Any]]]:
        return evals_by_setting(read_results(run_dir / EVAL_RESULTS), default_cap)

    _evaluate(run_dir, steps - {s for recs in by_cap().values() for s in recs}, default_cap, log)
    cap = choose_eval_setting(by_cap(), steps, default_cap)
    _evaluate(run_dir, steps - by_cap().get(cap, {}).keys(), cap, log)
    found = by_cap().get(cap, {})
    return cap, {s: found[s] for s in steps if s in found}


def _log_relation(points: Sequence[Point], rel: dict[str, Any], mlm: dict[str, Any], task: str,
                  log: Callable[[str], None]) -> None:
    log(f"{'step':>8}  {'mlm_acc':>8}  {task + ' acc':>12}")
    for p in points:
        log(f"{p.step:>8}  {p.mlm_acc:>8.4f}  {p.probe_acc:>12.4f}")
    log(describe_mlm_eval(mlm))
    if "pearson" in rel:
        pr, sp = rel["pearson"], rel["spearman"]
        sp_ci = f"[{sp['ci95'][0]:.2f}, {sp['ci95'][1]:.2f}]" if sp["ci95"] else "(no CI for n <= 3)"
        log(f"Pearson r {pr['r']:.3f} [{pr['ci95'][0]:.2f}, {pr['ci95'][1]:.2f}]; "
            f"Spearman rho {sp['rho']:.3f} {sp_ci}; n = {rel['n']} checkpoints")
    else:
        log(rel["note"])


def report_relation(run_dir: str | Path, key: dict[str, Any], default: bool = False,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Correlate and plot every checkpoint probed with ``key`` (result_key) against its MLM
    accuracy, into RUN/probe/<study_name>.{png,svg,json}: DEFAULT_NAME for the ``default``
    study, a name of its own for any other setting, so no call replaces another's study."""
    from zhbert.fileio import atomic_write_json
    from zhbert.plots import save_figure
    run_dir = Path(run_dir)
    probes = {r["step"]: r for r in _results(run_dir, key)}
    cap, evals = mlm_figures(run_dir, set(probes), log)
    points = join(probes, evals)
    mlm = mlm_eval_summary(cap, evals, sorted(set(probes) - set(evals)))
    rel = relate(points)
    _log_relation(points, rel, mlm, key["task"], log)
    if points:
        out, name = run_dir / PROBE_DIR, study_name(key, default)
        save_figure(plot_probe_vs_mlm(points, key["task"], mlm=f"validation, --max-sequences {cap:,}")
                    .figure, out, name)
        atomic_write_json(out / f"{name}.json", {**key, **rel, "study": name, "mlm_eval": mlm,
                                                 "points": [vars(p) for p in points]})
        log(f"plot: {out / name}.png" + ("" if default else
            f" (the study of these settings; {DEFAULT_NAME}.png is the default settings' study "
            f"of --task {DEFAULT_TASK})"))
    return rel


# ----------------------------------------------------------------------------- CLI

def add_arguments(p) -> None:
    from zhbert.run import add_checkpoint_arguments
    from zhbert.tables import add_table_arguments
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory made by zhbert train")
    add_checkpoint_arguments(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--task", choices=(DEFAULT_TASK,), help="builtin task from the run's data directory")
    g.add_argument("--task-file", metavar="FILE", help="CSV/TSV/JSONL: text,label or text_a,text_b,label "
                   "[,split] (other column names: --text-column and co.)")
    add_table_arguments(p)
    p.add_argument("--linear", action="store_true", help="logistic regression on frozen features")
    # fine-tuning takes a few epochs (BERT: 2-4); 10^20 ran without end or a word
    p.add_argument("--epochs", type=argtypes.count(1, 1000), default=3,
                   help="fine-tuning epochs (default 3)")
    p.add_argument("--max-train", type=argtypes.count(1), default=2000, metavar="N",
                   help="cap on training examples (default 2000)")
    p.add_argument("--lr", type=argtypes.positive, default=1e-4, help="fine-tuning learning rate")
    p.add_argument("--seed", type=argtypes.seed, default=0, help="seed of the split and the fine-tuning")


def run(args) -> int:
    from zhbert.run import open_run
    from zhbert.tables import table_options

    settings = ProbeSettings(linear=args.linear, epochs=args.epochs, max_train=args.max_train,
                             lr=args.lr, seed=args.seed)
    if args.task_file is not None:  # '' too: it was taken for no --task-file, a traceback
        from zhbert.tables import check_input_file
        check_input_file(args.task_file, "--task-file", "a CSV/TSV/JSONL file: text,label or "
                         "text_a,text_b,label [,split]")
        task = load_task_file(args.task_file, seed=args.seed, **table_options(args))
    else:
        task = builtin_task(args.task, open_run(args.run_dir).data_dir)
    records = probe_run(args.run_dir, task, settings, args.checkpoint, args.all_checkpoints)
    if not records:
        same = ("--linear, which uses no --epochs or --lr" if args.linear
                else "--epochs, --lr")
        print(f"zhbert: every selected checkpoint is already in {Path(args.run_dir) / RESULTS} "
              f"with these settings (the task, --seed, --max-train, {same})", file=sys.stderr)
    key = result_key(task, settings)
    report_relation(args.run_dir, key,
                    default=args.task == DEFAULT_TASK and key == result_key(task, ProbeSettings()))
    return 0
