"""Fill-mask inference: zhbert's fill-mask path vs the HF model over the same weights
and HF's fill-mask pipeline, at the machine's best precision and at fp32.

    python -m benchmarks.inference_throughput --config seed [--precision auto|fp32|bf16]
        [--quantize int8] [--quick] [--batches N] [--rounds N] [--threads N]
    python -m benchmarks.inference_throughput --agreement RUN_DIR [--sentences N]

Batches of 32 sentences of 48 characters, one [MASK] each, given as text. Sides:
- zhbert: what `zhbert fill-mask` runs (zhbert.fillmask.make_masked_lm + fill_mask):
  encoding from text (less the CLI's normalisation, ``normalized=True``: the texts are
  the token ids' characters, which OpenCC's t2s would change in ~11% of the places, so
  the sides would read different inputs; the pipeline does no such cleaning either), length-sorted batches, its inference encoder, top-1 from the
  masked slots; bf16 = bf16 matmul weights (fp32 residual/LayerNorm/head).
- reference: HF BertForMaskedLM (SDPA) on the token ids, the full (B, T, V) head.
- pipeline: transformers' fill-mask pipeline (its tokenizer, a one-character-per-
  token BertTokenizerFast, and its post-processing).
HF runs under bf16 autocast when the precision is bf16. All sides of all precisions
alternate in every round (the order flips each round); the median batch is reported.
Random weights: only speed and agreement mean anything, and near-flat logits make a
bf16/int8 top-1 flip easily; ``--agreement RUN_DIR`` measures the fast paths' top-1
against fp32 on a trained run over its held-out sentences.

Peak RSS per side (zhbert's path and the pipeline, each precision) comes from a fresh
process that builds only that side and fills two batches (``--no-rss`` skips it).

Precisions: default the best one (zhbert.precision "auto" for this CPU) and fp32
when they differ; ``--precision`` runs one. ``--quantize int8`` adds zhbert with
dynamic int8 Linear layers (compared with the best-precision HF sides).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import time

import torch

from benchmarks import common

VOCAB, CHARS, B = 10_000, 48, 32
FIRST_CHAR = 0x4E00  # token id i >= 5 is the CJK character FIRST_CHAR + i - 5


def make_batch(seed: int) -> dict[str, torch.Tensor]:
    """[CLS] 48 characters [SEP], one of them [MASK]: ids (B, 50) and positions (B, 1)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (B, CHARS + 2), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3
    positions = torch.randint(1, CHARS + 1, (B, 1), generator=g)
    ids.scatter_(1, positions, 4)
    return {"input_ids": ids, "positions": positions, "texts": texts(ids)}


def texts(input_ids: torch.Tensor) -> list[str]:
    return ["".join("[MASK]" if t == 4 else chr(FIRST_CHAR + t - 5) for t in row[1:-1].tolist())
            for row in input_ids]


def vocab_tokens() -> list[str]:
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(FIRST_CHAR + i) for i in range(VOCAB - 5)]


def hf_tokenizer():
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab_tokens())}, do_lower_case=False)


def precisions(requested: str | None) -> tuple[str, list[str]]:
    """(best, the precisions to run): best = what "auto" picks on this CPU."""
    from zhbert.machine import detect_capabilities
    from zhbert.precision import resolve_precision

    best = resolve_precision("auto", detect_capabilities("cpu")).precision
    if requested is None:
        return best, [best] if best == "fp32" else [best, "fp32"]
    return best, [resolve_precision(requested, detect_capabilities("cpu")).precision]


def hf_context(precision: str):
    return (contextlib.nullcontext() if precision == "fp32"
            else torch.autocast("cpu", dtype=torch.bfloat16))


def sides(cfg, run: list[str], quantize: str | None) -> dict[tuple[str, str], callable]:
    """(side, precision) -> function(batch) -> top-1 ids (B,) at the masked slot."""
    from transformers import BertForMaskedLM, pipeline

    from zhbert.fillmask import fill_mask, make_masked_lm
    from zhbert.model import BertForPretraining
    from zhbert.vocab import Vocab

    torch.manual_seed(0)
    ours = BertForPretraining(cfg).eval()
    vocab = Vocab(tuple(vocab_tokens()))
    hf = BertForMaskedLM._from_config(cfg.to_hf_config(), attn_implementation="sdpa").eval()
    hf.load_state_dict(ours.state_dict(), strict=False)  # no pooler / NSP head in MaskedLM
    fill = pipeline("fill-mask", model=hf, tokenizer=hf_tokenizer(), device="cpu", top_k=1)

    def zhbert(lm):
        def f(b):
            # the CLI's path but its normalisation (the texts are the ids' characters)
            out = fill_mask(lm, b["texts"], top_k=1, batch_size=B, normalized=True)
            return torch.tensor([vocab.id(masks[0][0][0]) for masks in out])
        return f

    def reference(precision):
        def f(b):
            with hf_context(precision):
                logits = hf(input_ids=b["input_ids"]).logits  # (B, T, V)
            index = b["positions"][:, :, None].expand(-1, -1, logits.shape[-1])
            return logits.gather(1, index)[:, 0].argmax(-1)
        return f

    def hf_pipeline(precision):
        def f(b):
            with hf_context(precision):
                out = fill(b["texts"], batch_size=B)
            return torch.tensor([o[0]["token"] for o in out])
        return f

    fns = {}
    for p in run:
        fns["zhbert", p] = zhbert(make_masked_lm(ours, vocab, cfg.max_position_embeddings, "cpu", p))
        fns["reference", p] = reference(p)
        fns["pipeline", p] = hf_pipeline(p)
    if quantize:
        fns["zhbert", quantize] = zhbert(make_masked_lm(ours, vocab, cfg.max_position_embeddings, "cpu",
                                                        "fp32", quantize=quantize))
    if ("zhbert", "fp32") not in fns:  # the agreement baseline, untimed
        fns["zhbert", "fp32 (untimed)"] = zhbert(make_masked_lm(ours, vocab, cfg.max_position_embeddings,
                                                                "cpu", "fp32"))
    return fns


def child_rss(args) -> int:
    """``--child SIDE:PRECISION``: build that side only (zhbert's fill-mask path or HF's
    pipeline, random weights), fill two batches, print the process's peak RSS as JSON."""
    import json

    from transformers import BertForMaskedLM, pipeline

    from zhbert.fillmask import fill_mask, make_masked_lm
    from zhbert.model import BertForPretraining, preset
    from zhbert.vocab import Vocab

    side, precision = args.child.split(":")
    cfg = preset(args.config, VOCAB, max_position_embeddings=512)
    texts_ = make_batch(0)["texts"]
    if side == "zhbert":
        lm = make_masked_lm(BertForPretraining(cfg).eval(), Vocab(tuple(vocab_tokens())),
                            cfg.max_position_embeddings, "cpu", precision)
        run = lambda: fill_mask(lm, texts_, top_k=1, batch_size=B, normalized=True)  # noqa: E731
    else:
        hf = BertForMaskedLM._from_config(cfg.to_hf_config(), attn_implementation="sdpa").eval()
        fill = pipeline("fill-mask", model=hf, tokenizer=hf_tokenizer(), device="cpu", top_k=1)

        def run():
            with hf_context(precision):
                fill(texts_, batch_size=B)
    with torch.inference_mode():
        run()
        run()
    print(json.dumps({"peak_rss_mb": round(common.peak_rss_mb(), 1)}))
    return 0


def side_rss(args, side: str, precision: str) -> float | None:
    return common.child_peak_rss_mb(
        "benchmarks.inference_throughput",
        ["--config", args.config, "--child", f"{side}:{precision}"]
        + (["--threads", str(args.threads)] if args.threads else []),
        f"{side} {precision}")


def sentence_flops(cfg) -> float:
    """Forward FLOPs of one sentence ([CLS] 48 characters [SEP], one mask): matmuls only,
    the vocabulary head at the mask (zhbert.accounting.flops_per_token counts training, 3x)."""
    from zhbert.accounting import flops_per_token

    T = CHARS + 2
    return flops_per_token(cfg, T, 1 / T) / 3 * T


def matmul_peak(precision: str) -> float:
    return common.matmul_gflops(torch.bfloat16 if precision == "bf16" else torch.float32, reps=30)


def summarize(secs: dict, top1: dict, base: tuple, best: str, peak: dict, rss: dict,
              flops: float) -> tuple[list[list[str]], dict]:
    """The table rows and the summary of each side: median-batch sentences/s, GFLOP/s,
    top-1 agreement with zhbert fp32 and with the reference, peak RSS."""
    rows = [["side", "precision", "sentences/s", "best..worst batch", "GFLOP/s", "% peak",
             "top-1 = zhbert fp32", "top-1 = reference same precision", "peak RSS MB"]]
    summary = {}
    for (side, p), s in secs.items():
        sps = B / statistics.median(s)
        gflops = sps * flops / 1e9
        ref_p = p if ("reference", p) in top1 else best
        agree = (top1[side, p] == top1[base]).float().mean().item()
        agree_ref = (top1[side, p] == top1["reference", ref_p]).float().mean().item()
        summary[f"{side} {p}"] = {"sentences_per_s": sps, "mean_sentences_per_s": B * len(s) / sum(s),
                                  "model_gflops": gflops,
                                  "top1_agreement_zhbert_fp32": agree, "top1_agreement_reference": agree_ref,
                                  "peak_rss_mb": rss.get((side, p))}
        rows.append([side, p, f"{sps:,.1f}", f"{B / min(s):,.1f}..{B / max(s):,.1f}", f"{gflops:,.0f}",
                     f"{100 * gflops / peak[p]:.0f}%" if p in peak else "-",
                     f"{100 * agree:.1f}% of {len(top1[side, p])}", f"{100 * agree_ref:.1f}%",
                     f"{rss[side, p]:,.0f}" if rss.get((side, p)) else "-"])
    return rows, summary


def ratio_lines(secs: dict, summary: dict, best: str) -> tuple[dict, dict, dict, list[str]]:
    """zhbert's speed over the pipeline's and the reference's, each precision (int8 against HF
    at the best precision): (median-batch ratios, mean-based ratios, {name: load moved them
    apart}, the lines common.ratio_lines prints), as train_throughput reports its ratio."""
    both = {}
    for (side, p) in secs:
        if side != "zhbert":
            continue
        hf_p = p if ("pipeline", p) in secs else best  # int8 vs HF at the best precision
        ours = summary[f"zhbert {p}"]
        for other in ("pipeline", "reference"):
            theirs = summary[f"{other} {hf_p}"]
            both[f"zhbert {p} / {other} {hf_p}"] = (
                ours["sentences_per_s"] / theirs["sentences_per_s"],
                ours["mean_sentences_per_s"] / theirs["mean_sentences_per_s"])
    spread = "; ".join(f"{side} {p} {B / min(s):,.1f}..{B / max(s):,.1f} sentences/s"
                       for (side, p), s in secs.items())
    moved, lines = common.ratio_lines(both, spread, "batches")
    return ({k: m for k, (m, _) in both.items()}, {k: a for k, (_, a) in both.items()}, moved, lines)


def throughput(args) -> int:
    n = args.batches
    from zhbert.model import preset

    cfg = preset(args.config, VOCAB, max_position_embeddings=512)
    info = common.machine()
    best, run = precisions(None if args.precision == "both" else args.precision)
    batches = [make_batch(s) for s in range(n)]
    fns = sides(cfg, run, None if args.quantize == "none" else args.quantize)
    base = next(k for k in fns if k[0] == "zhbert" and k[1].startswith("fp32"))
    timed = [k for k in fns if "untimed" not in k[1]]
    # the matmul peak of each precision, best of many, before and after the rounds (the
    # machine is shared: one slow sample would make the peak look low)
    peak_before = {p: matmul_peak(p) for p in run}
    with torch.inference_mode():
        top1 = {k: torch.cat([f(b) for b in batches]) for k, f in fns.items()}  # also the warm-up
        secs = {k: [] for k in timed}
        for r in range(args.rounds):
            for k in (timed if r % 2 == 0 else timed[::-1]):
                for b in batches:
                    t = time.perf_counter()
                    fns[k](b)
                    secs[k].append(time.perf_counter() - t)
    peak = {p: max(peak_before[p], matmul_peak(p)) for p in run}
    rss = {} if args.no_rss else {(side, p): side_rss(args, side, p)
                                  for p in run for side in ("zhbert", "pipeline")}
    flops = sentence_flops(cfg)
    rows, summary = summarize(secs, top1, base, best, peak, rss, flops)
    ratios, mean_ratios, moved, ratio_text = ratio_lines(secs, summary, best)
    print(common.machine_line(info))
    print(f"config {args.config}, batch {B} x {CHARS} characters (+[CLS]/[SEP]), 1 mask each, "
          f"{args.rounds} rounds x {n} batches per side, median batch; best precision here: {best}; "
          f"torch threads {torch.get_num_threads()}")
    print("matmul peak (1024^3, best of 30 before and after the rounds): "
          + ", ".join(f"{p} {g:,.0f} GFLOP/s" for p, g in peak.items())
          + f"; GFLOP/s = sentences/s x {flops / 1e9:.2f} GFLOP, the forward pass with the vocabulary "
          "head at the mask only (what zhbert computes; HF computes more)")
    print(common.table(rows))
    for line in ratio_text:
        print(line)
    path = common.write_json(f"inference_throughput-{args.config}",
                             {"args": vars(args), "machine": info, "best_precision": best,
                              "matmul_peak_gflops": peak, "sentence_gflop": flops / 1e9,
                              "summary": summary, "ratios": ratios, "mean_ratios": mean_ratios,
                              "load_moved_batches": moved,
                              "batch_s": {f"{a} {b}": s for (a, b), s in secs.items()},
                              "loadavg_end": [round(x, 2) for x in os.getloadavg()],
                              "peak_rss_mb": common.peak_rss_mb()})
    print(f"wrote {path}")
    return 0


# ----------------------------------------------------------------------------- agreement

def held_out_sentences(run_dir, count: int, max_chars: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``count`` held-out (validation) sentences of a run, each with one CJK character
    replaced by [MASK]: (texts, masked characters)."""
    from zhbert.run import open_run, open_run_data

    data = open_run_data(open_run(run_dir))
    split, tokens = data.split("validation"), data.vocab.tokens
    rng = random.Random(seed)
    order = list(range(split.num_sentences))
    rng.shuffle(order)
    out, answers = [], []
    for i in order:
        units = [tokens[t].removeprefix("##") for t in split.sentence(i).tolist()][:max_chars]
        cjk = [j for j, u in enumerate(units) if len(u) == 1 and "\u4e00" <= u <= "\u9fff"]
        if len(units) < 4 or not cjk:
            continue
        j = rng.choice(cjk)
        answers.append(units[j])
        units[j] = "[MASK]"
        out.append("".join(units))
        if len(out) == count:
            break
    return out, answers


def agreement(args) -> int:
    """Top-1 and probabilities of the fast paths vs zhbert fp32 on a trained run."""
    from zhbert.fillmask import fill_mask, load_masked_lm

    info = common.machine()
    best, _ = precisions(None)
    ref = load_masked_lm(args.agreement, precision="fp32")
    sentences, answers = held_out_sentences(args.agreement, args.sentences, ref.max_len - 2)
    if not sentences:
        raise common.BenchError(f"{args.agreement}: no held-out sentence with a CJK character to mask")
    variants = {"fp32": ref}
    if best != "fp32":
        variants[best] = load_masked_lm(args.agreement, precision=best)
    if args.quantize != "none":
        variants[args.quantize] = load_masked_lm(args.agreement, quantize=args.quantize)
    results, secs = {}, {}
    for name, lm in variants.items():
        t = time.perf_counter()
        results[name] = [m[0] for m in fill_mask(lm, sentences, top_k=5, batch_size=32)]
        secs[name] = time.perf_counter() - t
    rows = [["variant", "top-1 = fp32", "top-5 set = fp32", "max |p - p_fp32| (top-5)", "accuracy vs text",
             "sentences/s"]]
    summary = {}
    for name, res in results.items():
        same1 = sum(a[0][0] == b[0][0] for a, b in zip(res, results["fp32"]))
        same5 = sum({t for t, _ in a} == {t for t, _ in b} for a, b in zip(res, results["fp32"]))
        fp32_probs = [dict(b) for b in results["fp32"]]
        err = max(abs(p - d[t]) for a, d in zip(res, fp32_probs) for t, p in a if t in d)
        acc = sum(a[0][0] == ans for a, ans in zip(res, answers))
        n = len(res)
        summary[name] = {"top1_same": same1, "top5_same": same5, "max_prob_diff": err, "correct": acc, "n": n,
                         "sentences_per_s": n / secs[name]}
        rows.append([name, f"{same1}/{n} ({100 * same1 / n:.1f}%)", f"{100 * same5 / n:.1f}%", f"{err:.1e}",
                     f"{100 * acc / n:.1f}%", f"{n / secs[name]:,.0f}"])
    print(common.machine_line(info))
    print(f"{ref.source}: {len(sentences)} held-out sentences, one CJK character masked each")
    print(common.table(rows))
    path = common.write_json("fillmask_agreement", {"args": vars(args), "machine": info, "source": ref.source,
                                                    "summary": summary})
    print(f"wrote {path}")
    return 0


def parse_args(argv: list[str] | None):
    from zhbert import argtypes

    p = common.Parser("inference_throughput", __doc__)
    p.add_argument("--config", choices=("tiny", "seed"), default="seed")
    p.add_argument("--precision", choices=("both", "auto", "fp32", "bf16"), default="both",
                   help="both (default): the best precision and fp32 when they differ")
    p.add_argument("--quantize", choices=("none", "int8"), default="none",
                   help="also run zhbert with dynamic int8 Linear layers")
    p.add_argument("--batches", type=argtypes.count(1),
                   help="timed batches per side and round (default 4; --quick 2)")
    p.add_argument("--rounds", type=argtypes.count(1), default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=argtypes.cores)
    p.add_argument("--agreement", metavar="RUN_DIR",
                   help="instead: top-1 agreement of the fast paths with fp32 on a trained run")
    p.add_argument("--sentences", type=argtypes.count(1), default=512,
                   help="held-out sentences for --agreement")
    p.add_argument("--no-rss", action="store_true",
                   help="skip the per-side peak RSS (a fresh process per side that builds only it)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.batches is None:  # recorded as run, not as asked
        args.batches = 2 if args.quick else 4
    if args.agreement and not os.path.isdir(args.agreement):
        p.error(f"--agreement {args.agreement}: no such run folder")
    return args


@common.entry("inference_throughput")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        return child_rss(args)
    return agreement(args) if args.agreement else throughput(args)


if __name__ == "__main__":
    sys.exit(main())
