"""`zhbert fill-mask`'s command line: sentences from the command line or --input (a text
file or a table with an answer column), the table or JSON it prints. The model, its
encoding and the candidates are zhbert.fillmask's."""

from __future__ import annotations

import json
import sys

from zhbert import argtypes
from zhbert.errors import UserError
from zhbert.fillmask import (Candidates, MaskedLM, encode_masked, fill_mask, filled_text,
                             load_masked_lm, normalize, show_filled, unknown_chars)

def add_arguments(p) -> None:
    p.add_argument("model", metavar="MODEL", help="run directory or exported model directory")
    p.add_argument("sentences", nargs="*", metavar="SENTENCE", help='text with [MASK], e.g. "北京是中国的[MASK]都。"')
    p.add_argument("--input", metavar="FILE", help="a file of sentences, one per line, or a "
                   "CSV/TSV/JSONL table (its text column: see --text-column)")
    p.add_argument("--top-k", type=argtypes.count(1), default=5,
                   help="candidates per [MASK] (default 5; more than the model's vocabulary "
                        "shows all of it, with a warning)")
    p.add_argument("--checkpoint", type=argtypes.count(0), metavar="STEP", help="checkpoint step (run directories)")
    # no upper bound: a batch takes at most the sentences given, and what fits depends on the
    # device and the sentences' lengths (a GPU holds thousands of short ones)
    p.add_argument("--batch-size", type=argtypes.count(1), default=32,
                   help="sentences per forward pass (default 32)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="auto: bf16 only where the CPU/GPU runs it natively, else fp32")
    p.add_argument("--quantize", default="none", choices=("none", "int8"),
                   help="int8: dynamic int8 Linear layers in the encoder (CPU; faster, "
                        "slightly different probabilities)")
    from zhbert.tables import add_table_arguments
    add_table_arguments(p, pair=False, label=False)  # --input as a table: its text column
    p.add_argument("--answer-column", metavar="NAME", default=ANSWER_COLUMN,
                   help="table column with the expected token of each sentence's first [MASK]: "
                        "its rank is printed, and how many answers are in the top k "
                        f"(default: {ANSWER_COLUMN!r} when the table has it)")


ANSWER_COLUMN = "answer"
INPUT_KINDS = "a file of sentences, one per line, or a CSV/TSV/JSONL table"


def _read_sentences(args) -> tuple[list[str], list[str | None], list[str]]:
    """The sentences, each one's expected answer (None: not given), and where each came
    from, for errors: "sentence N" on the command line, "FILE line N" from --input (an
    error naming only "sentence 12" of a file left the user counting its lines)."""
    from zhbert.tables import check_input_file, is_table, read_table, table_options

    if args.input is not None:
        check_input_file(args.input, "--input", INPUT_KINDS)
    sentences = list(args.sentences)
    answers: list[str | None] = [None] * len(sentences)
    where = [f"sentence {i + 1}" for i in range(len(sentences))]
    if args.input and is_table(args.input):
        table = read_table(args.input, what="--input file", need_label=False, **table_options(args))
        column = getattr(args, "answer_column", ANSWER_COLUMN)
        if column != ANSWER_COLUMN and table.rows and column not in table.rows[0].extra:
            raise UserError(f"{args.input}: no column {column!r} for --answer-column "
                            f"(it has {', '.join([table.columns.text, *table.rows[0].extra])})")
        sentences += [r.text for r in table.rows]
        answers += [(r.extra.get(column) or "").strip() or None for r in table.rows]
        where += [f"{args.input} line {r.line}" for r in table.rows]
    elif args.input:
        from zhbert.corpus.decoding import read_small_text

        text = read_small_text(args.input, "--input file")  # UTF-8, GBK, Big5, UTF-16
        lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        sentences += [line for _, line in lines]
        answers += [None] * len(lines)
        where += [f"{args.input} line {n}" for n, _ in lines]
    if not sentences and args.input:  # every row skipped (warned above), or no line at all
        raise UserError(f"--input file {args.input} holds no sentence to fill; write one per line "
                        "(or a text column in a table), each with [MASK]")
    if not sentences:
        raise UserError('give a sentence with [MASK] (zhbert fill-mask MODEL "北京是中国的[MASK]都。") '
                        "or --input FILE")
    return sentences, answers, where


def answer_rank(masks: list[Candidates], answer: str | None) -> int | None:
    """1-based rank of the expected answer among the first [MASK]'s candidates; 0 when it is
    not among them; None when there is no answer (or no mask) to check."""
    if answer is None or not masks:
        return None
    tokens = [t for t, _ in masks[0]]
    return tokens.index(answer) + 1 if answer in tokens else 0


def _answer_line(answer: str, rank: int, masks: list[Candidates], top_k: int) -> str:
    if rank:
        return f"  answer {answer}: rank {rank} ({masks[0][rank - 1][1]:.3f})"
    return f"  answer {answer}: not in the top {top_k}"


def _usable(lm: MaskedLM, sentences, where, given: int, strict: bool) -> list[int]:
    """Which sentences this model can fill; --input lines it cannot (no [MASK], too long)
    skipped with one warning, as table readers skip bad rows (one long line stopped a whole
    file). A sentence given on the command line, or any with --strict, is still an error."""
    keep, skipped = [], []
    for i, (s, w) in enumerate(zip(sentences, where)):
        try:
            encode_masked(lm.vocab, s, lm.max_len, w, lm.language)
            keep.append(i)
        except UserError as exc:
            if i < given or strict:
                raise
            skipped.append(str(exc))
    if skipped:
        print(f"zhbert: warning: skipped {len(skipped)} of {len(sentences) - given} --input lines "
              f"(the first: {skipped[0]}); pass --strict to refuse such a file", file=sys.stderr)
    if not keep:
        raise UserError("no sentence left to fill (see the warning above)")
    return keep


def _shown_top_k(results: list[list[Candidates]], top_k: int) -> int:
    """The candidates shown per [MASK]: fill_mask gives all the model can propose where
    --top-k asks more; say so, rather than "not in the top 10^20" of a few thousand."""
    shown = max((len(c) for masks in results for c in masks), default=top_k)
    if shown < top_k:
        print(f"zhbert: warning: --top-k {top_k:,} is more than the {shown:,} tokens this model "
              f"can propose for a [MASK]; showing all {shown:,}", file=sys.stderr)
    return shown


def run(args) -> int:
    if not args.model:  # Path("") is ".", which the error would name instead
        raise UserError("MODEL '' names no directory; give a run directory (zhbert train's "
                        "--out) or an exported model directory")
    sentences, answers, where = _read_sentences(args)
    quantize = None if args.quantize == "none" else args.quantize
    lm = load_masked_lm(args.model, args.checkpoint, precision=args.precision, quantize=quantize)
    seen = [normalize(lm, s) for s in sentences]  # what the model reads: shown where it differs
    keep = _usable(lm, seen, where, len(args.sentences), getattr(args, "strict", False))
    sentences, seen, where = [sentences[i] for i in keep], [seen[i] for i in keep], [where[i] for i in keep]
    # an expected answer is compared with tokens of normalised text: 國 is the vocabulary's 国
    answers = [answers[i] if answers[i] is None else normalize(lm, answers[i]) for i in keep]
    results = fill_mask(lm, seen, args.top_k, args.batch_size, where=where, normalized=True)
    top_k = _shown_top_k(results, args.top_k)
    ranks = [answer_rank(masks, a) for masks, a in zip(results, answers)]
    unknown = [unknown_chars(lm.vocab, s) for s in seen]
    if args.json:
        rows = [{"sentence": s, "normalized": n, "unknown": u,
                 "masks": [[{"token": t, "prob": p} for t, p in cands] for cands in masks],
                 "filled": filled_text(lm, n, masks), "answer": a, "answer_rank": r}
                for s, n, u, masks, a, r in zip(sentences, seen, unknown, results, answers, ranks)]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    print(f"# {lm.source} ({lm.describe()})", file=sys.stderr)
    for s, n, u, masks, a, r in zip(sentences, seen, unknown, results, answers, ranks):
        print(s)
        if n != s:
            print(f"  normalized: {n}")
        if u:
            print(f"  warning: not in the vocabulary, read as [UNK]: {' '.join(u)}")
        for m, cands in enumerate(masks, 1):
            print(f"  [MASK] {m}: " + "  ".join(f"{t} {p:.3f}" for t, p in cands))
        if show_filled(lm, masks):
            print(f"  filled: {filled_text(lm, n, masks)}")
        if r is not None:
            print(_answer_line(a, r, masks, top_k))
    checked = [r for r in ranks if r is not None]
    if checked:
        print(f"answers in the top {top_k}: {sum(1 for r in checked if r)} of {len(checked)}"
              f" (top 1: {sum(1 for r in checked if r == 1)})")
    return 0
