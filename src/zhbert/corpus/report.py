"""Dataset report: figures computed at prepare time (report.json) and `zhbert data report`.

``CorpusStats`` collects raw counts while ``zhbert prepare`` runs;
``build_report`` turns them into report.json. `zhbert data report DATA_DIR`
prints that file (or ``--json``) with the seed's checks -- >= 100K sentences,
>= 10K characters in the vocabulary, 30-100 characters average sentence length,
duplicate rate -- as PASS/FAIL lines, thresholds configurable; exit code 1 when
a check fails, 2 (a UserError) when the directory is not one training could read.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from zhbert import argtypes
from zhbert.errors import UserError
from zhbert.vocab import Vocab

TOP_N = 20
HIST_BARS = 16  # most bars in the sentence-length histogram
TAG_CAPACITY = 10_000  # distinct tags counted at once (zh.wikipedia has over a million categories)


class TopCounter:
    """Counts of the most frequent keys in bounded memory (Misra-Gries, batched).

    Exact while at most 2 x ``capacity`` distinct keys were seen. Beyond that, whenever
    the table doubles it keeps the ``capacity`` biggest counts, each reduced by the next
    biggest one (``cut``); every key losing ``cut`` means >= capacity + 1 keys lose it,
    so the cuts add up to at most total / (capacity + 1). ``undercount`` is that sum: any
    count may be short by at most this much, and a key more frequent than it is kept.
    (A plain Counter of a million distinct categories took ~127 MB, measured.)
    """

    def __init__(self, capacity: int = TAG_CAPACITY):
        self.capacity = capacity
        self.counts: Counter = Counter()
        self.undercount = 0

    def update(self, keys) -> None:
        self.counts.update(keys)
        self._bound()

    def add(self, key) -> None:
        """One more of ``key`` (a document's source: a Counter.update per document is slower)."""
        self.counts[key] += 1
        self._bound()

    def _bound(self) -> None:
        if len(self.counts) > 2 * self.capacity:
            cut = sorted(self.counts.values(), reverse=True)[self.capacity]
            self.undercount += cut
            self.counts = Counter({k: n - cut for k, n in self.counts.items() if n > cut})

    def most_common(self, n: int) -> list[tuple[str, int]]:
        return self.counts.most_common(n)


@dataclass
class CorpusStats:
    """Counts gathered while preparing (a mutable accumulator, filled by prepare)."""

    docs_read: int = 0
    bytes_read: int = 0
    docs_dropped_clean: int = 0      # nothing (or too little) left after cleaning
    dropped_sentences: Counter = field(default_factory=Counter)  # reason -> n
    sentence_lengths: Counter = field(default_factory=Counter)   # chars -> n (kept docs)
    # a JSONL "source" per line (a URL each) made these a key a document
    docs_read_per_source: TopCounter = field(default_factory=TopCounter)
    docs_kept_per_source: TopCounter = field(default_factory=TopCounter)
    tags: TopCounter = field(default_factory=TopCounter)         # kept docs, the most frequent
    units: dict[str, Counter] = field(default_factory=dict)      # split -> unit counts
    chars: Counter = field(default_factory=Counter)              # split -> characters
    unk_tokens: Counter = field(default_factory=Counter)         # split -> [UNK] ids
    script_filter: Counter = field(default_factory=Counter)      # sentences read, dropped by script
    sentences_total: int = 0
    sentences_duplicate: int = 0     # repeated sentences in the final data (all splits)


def _is_cjk(unit: str) -> bool:
    return len(unit) == 1 and ("\u3400" <= unit <= "\u9fff" or "\uf900" <= unit <= "\ufaff"
                               or "\U00020000" <= unit <= "\U0003134f")


def gb2312_levels() -> tuple[str, str]:
    """GB2312 level 1 (rows 16-55, 3755 chars) and level 2 (rows 56-87, 3008 chars)."""
    def rows(lo: int, hi: int) -> str:
        chars = []
        for row in range(lo, hi + 1):
            for col in range(1, 95):
                try:
                    chars.append(bytes([0xA0 + row, 0xA0 + col]).decode("gb2312"))
                except UnicodeDecodeError:
                    pass  # row 55 ends at column 89
        return "".join(chars)
    return rows(16, 55), rows(56, 87)


def _length_stats(lengths: Counter) -> dict[str, Any]:
    n = sum(lengths.values())
    if not n:
        return {"mean": 0.0, "median": 0, "p95": 0, "histogram": []}
    ordered = sorted(lengths.items())

    def quantile(q: float) -> int:
        seen = 0
        for length, k in ordered:
            seen += k
            if seen >= q * n:
                return length
        return ordered[-1][0]

    # bins of 10, 20, 30... characters: at most HIST_BARS bars whatever the longest sentence
    width = 10 * -(-(ordered[-1][0] + 1) // (10 * HIST_BARS))
    bins: Counter = Counter()
    for length, k in ordered:
        bins[length // width * width] += k
    return {"mean": round(sum(l * k for l, k in ordered) / n, 2), "median": quantile(0.5),
            "p95": quantile(0.95), "min": ordered[0][0], "max": ordered[-1][0],
            "histogram": [[lo, lo + width - 1, bins[lo]] for lo in range(0, max(bins) + 1, width)]}


def _coverage(units: Counter, vocab: Vocab) -> float:
    total = sum(units.values())
    return sum(n for u, n in units.items() if u in vocab) / total if total else 0.0


def _per_source(stats: CorpusStats, kept: int) -> dict[str, Any]:
    """The TOP_N sources with the most documents read and kept, and the documents of the
    others (a JSONL "source" per line, a URL each, listed 400 URLs twice in report.json and
    in one 15 KB line of `data report`)."""
    read, kept_top = (dict(c.most_common(TOP_N)) for c in (stats.docs_read_per_source,
                                                           stats.docs_kept_per_source))
    return {"documents_read": read, "documents_kept": kept_top,
            "other_sources": {"documents_read": stats.docs_read - sum(read.values()),
                              "documents_kept": kept - sum(kept_top.values())},
            "max_undercount": max(stats.docs_read_per_source.undercount,
                                  stats.docs_kept_per_source.undercount)}


def build_report(stats: CorpusStats, vocab: Vocab, splits: dict[str, dict[str, int]],
                 dedup: dict[str, int], sources: list[dict], resources: dict[str, float]) -> dict:
    """report.json: every figure `zhbert data report` prints and checks."""
    all_units: Counter = Counter()
    for c in stats.units.values():
        all_units.update(c)
    cjk = sum(n for u, n in all_units.items() if _is_cjk(u))
    level1, level2 = gb2312_levels()
    cleaned = dedup.get("kept", 0) + dedup.get("exact", 0) + dedup.get("near", 0)
    train_chars = Counter({u: n for u, n in stats.units.get("train", Counter()).items()
                           if not u.startswith("##")})
    val_tokens = splits.get("validation", {}).get("tokens", 0)
    return {
        "splits": {name: {**counts, "characters": stats.chars[name]} for name, counts in splits.items()},
        "totals": {"documents": sum(s["documents"] for s in splits.values()),
                   "sentences": sum(s["sentences"] for s in splits.values()),
                   "tokens": sum(s["tokens"] for s in splits.values()),
                   "characters": sum(stats.chars.values())},
        "vocab": {"size": len(vocab), "characters": vocab.num_chars,
                  "continuation_pieces": sum(t.startswith("##") for t in vocab.tokens),
                  "train_coverage": round(_coverage(stats.units.get("train", Counter()), vocab), 6),
                  # None, not 100%, when nothing was held out
                  "validation_oov_rate": (round(1 - _coverage(stats.units["validation"], vocab), 6)
                                          if stats.units.get("validation") else None),
                  "validation_unk_token_rate": round(stats.unk_tokens["validation"] / val_tokens, 6) if val_tokens else None,
                  "gb2312_level1_coverage": round(sum(c in vocab for c in level1) / len(level1), 4),
                  "gb2312_level2_coverage": round(sum(c in vocab for c in level2) / len(level2), 4)},
        "sentence_length": _length_stats(stats.sentence_lengths),
        "chinese_char_ratio": round(cjk / sum(stats.chars.values()), 4) if stats.chars else 0.0,
        "duplicates": {"documents_after_cleaning": cleaned,
                       "exact_documents": dedup.get("exact", 0), "near_documents": dedup.get("near", 0),
                       "exact_rate": round(dedup.get("exact", 0) / cleaned, 6) if cleaned else 0.0,
                       "near_rate": round(dedup.get("near", 0) / cleaned, 6) if cleaned else 0.0,
                       "sentence_duplicate_rate": round(stats.sentences_duplicate / stats.sentences_total, 6)
                       if stats.sentences_total else 0.0},
        "input": {"documents_read": stats.docs_read, "bytes_read": stats.bytes_read,
                  "documents_dropped_by_cleaning": stats.docs_dropped_clean,
                  "dropped_sentences": dict(sorted(stats.dropped_sentences.items())),
                  # of all sentences read, dropped documents included (a wrong --language shows here)
                  "script_filtered_share": (round(stats.script_filter["dropped"] / stats.script_filter["sentences"], 6)
                                            if stats.script_filter["sentences"] else 0.0)},
        "sources": {**_per_source(stats, dedup.get("kept", 0)),
                    "files": [{k: s.get(k) for k in ("path", "kind", "encoding", "bytes", "documents", "skipped")}
                              for s in sources],
                    "not_utf8": [s["path"] for s in sources if s.get("encoding") not in ("utf-8", "")],
                    "warnings": [w for s in sources for w in s.get("warnings", [])]},
        "top_tags": stats.tags.most_common(TOP_N),
        "top_tags_max_undercount": stats.tags.undercount,  # 0: the counts are exact
        "top_characters": train_chars.most_common(TOP_N * 2),
        "resources": resources,
    }


# ---------------------------------------------------------------- `zhbert data report`

@dataclass(frozen=True)
class Check:
    name: str
    value: float
    target: str
    passed: bool
    percent: bool = False  # print the value as a percentage, like its target


def _rate(value: float | None, missing: str = "n/a") -> str:
    return missing if value is None else f"{value:.4%}"


def oov_text(vocab_report: dict) -> str:
    return _rate(vocab_report["validation_oov_rate"], "n/a (empty validation split)")


def fewest_documents_to_hold_out() -> int:
    """The fewest kept documents of which the largest --validation share holds one out;
    below it no share helps. SplitConfig.sizes is the rule; this only asks it."""
    from zhbert.corpus.splits import SplitConfig
    largest = SplitConfig(validation=0.49)  # shares are in [0, 0.5)
    return next(n for n in range(1, 1000) if largest.sizes(n)[0])


def empty_split_warnings(report: dict) -> list[str]:
    """One line per held-out split that got no documents (held-out figures need them), with
    the fix that works: splits are made of whole documents, so with too few documents a
    larger share cannot help and only more documents can."""
    docs = report["totals"]["documents"]
    fewest = fewest_documents_to_hold_out()
    lines = []
    for name, c in report["splits"].items():
        if name == "train" or c["documents"]:
            continue
        needed = " (zhbert train evaluates on it)" if name == "validation" else ""
        if docs < fewest:
            fix = (f"the corpus has only {docs:,} document{'s' if docs != 1 else ''} after cleaning "
                   f"and dedup, and splits are made of whole documents (at least {fewest} are "
                   f"needed to hold one out), so raising --{name} cannot help: give zhbert prepare "
                   "more documents (in a text file, a blank line between documents, or --per-line "
                   "for a document per line)")
        else:
            fix = f"raise the share held out (zhbert prepare --{name}, a fraction of the {docs:,} documents)"
        lines.append(f"the {name} split is empty: held-out evaluation has nothing to score{needed}; {fix}")
    return lines


def run_checks(report: dict, min_sentences: int, min_vocab: int,
               avg_len: tuple[float, float], max_dup_rate: float) -> list[Check]:
    """The seed's verify_dataset checks, with configurable thresholds."""
    sentences = report["totals"]["sentences"]
    chars = report["vocab"]["characters"]
    mean = report["sentence_length"]["mean"]
    dup = report["duplicates"]["sentence_duplicate_rate"]
    lo, hi = avg_len
    return [
        Check("sentences", sentences, f">= {min_sentences:,}", sentences >= min_sentences),
        Check("vocabulary characters", chars, f">= {min_vocab:,}", chars >= min_vocab),
        Check("average sentence length", mean, f"{lo:g}-{hi:g} chars", lo <= mean <= hi),
        Check("duplicate sentence rate", dup, f"<= {max_dup_rate:.2%}", dup <= max_dup_rate, percent=True),
    ]


def _fmt(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


def _bar(n: int, most: int, width: int = 40) -> str:
    return "#" * max(1 if n else 0, round(width * n / most)) if most else ""


def render(report: dict, checks: list[Check], language: str = "zh") -> str:
    """Human-readable report (plain text, fits 80 columns); the GB2312 and Chinese-character
    lines only for Chinese data."""
    v, d, s = report["vocab"], report["duplicates"], report["sentence_length"]
    lines = ["splits:"]
    for name, c in report["splits"].items():
        lines.append(f"  {name:<10} {c['documents']:>9,} docs {c['sentences']:>10,} sentences "
                     f"{c['characters']:>12,} chars")
    lines += [f"vocabulary: {v['size']:,} tokens ({v['characters']:,} characters, "
              f"{v['continuation_pieces']:,} ##pieces)",
              f"  train coverage {v['train_coverage']:.4%}, validation OOV {oov_text(v)}, "
              f"[UNK] tokens {_rate(v['validation_unk_token_rate'])}",
              f"  GB2312 level 1 {v['gb2312_level1_coverage']:.1%}, level 2 {v['gb2312_level2_coverage']:.1%}",
              f"Chinese-character ratio: {report['chinese_char_ratio']:.1%}",
              f"language: {language}; share of the sentences read dropped by its script filter: "
              f"{report['input'].get('script_filtered_share', 0.0):.1%}",
              f"sentence length: mean {s['mean']}, median {s['median']}, p95 {s['p95']}"]
    if language != "zh":
        lines = [line for line in lines if not line.startswith(("  GB2312", "Chinese-character"))]
    most = max((b[2] for b in s["histogram"]), default=0)
    lines += [f"  {lo:>4}-{hi:<4} {_bar(n, most)} {n:,}" for lo, hi, n in s["histogram"]]
    lines += [f"duplicates: {d['exact_documents']:,} exact ({d['exact_rate']:.2%}) and "
              f"{d['near_documents']:,} near ({d['near_rate']:.2%}) of {d['documents_after_cleaning']:,} "
              f"documents removed; repeated sentences {d['sentence_duplicate_rate']:.2%}"]
    inp = report["input"]
    lines.append(f"input: {inp['documents_read']:,} documents, {inp['bytes_read'] / 1e6:.1f} MB; "
                 f"{inp['documents_dropped_by_cleaning']:,} dropped by cleaning")
    if inp["dropped_sentences"]:
        lines.append("  dropped sentences: " + ", ".join(f"{k} {n:,}" for k, n in inp["dropped_sentences"].items()))
    src = report["sources"]
    others = src.get("other_sources", {}).get("documents_kept", 0)  # older reports listed every source
    lines.append("documents kept per source: " + ", ".join(f"{k} {n:,}" for k, n in src["documents_kept"].items())
                 + (f" (and {others:,} from other sources)" if others else ""))
    if report["top_tags"]:
        short = report.get("top_tags_max_undercount", 0)
        lines.append("top tags: " + ", ".join(f"{t} {n:,}" for t, n in report["top_tags"])
                     + (f" (too many distinct tags to count all: each count may be short by up to "
                        f"{short:,})" if short else ""))
    lines.append("top characters: " + " ".join(c for c, _ in report["top_characters"]))
    lines += [f"not UTF-8: {p}" for p in src["not_utf8"]] + [f"warning: {w}" for w in src["warnings"]]
    lines += [f"warning: {w}" for w in empty_split_warnings(report)]
    r = report["resources"]
    workers = (f", {r['workers']} workers {r.get('worker_peak_rss_mb', 0):.0f} MB each at most"
               if r.get("workers", 1) > 1 else "")
    lines.append(f"prepared in {r.get('seconds', 0):.1f} s, peak RSS {r.get('peak_rss_mb', 0):.0f} MB{workers}")
    lines.append("checks:")
    lines += [f"  {'PASS' if c.passed else 'FAIL'}  {c.name}: "
              f"{f'{c.value:.2%}' if c.percent else _fmt(c.value)} (target {c.target})"
              for c in checks]
    return "\n".join(lines)


def _avg_len(text: str) -> tuple[float, float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (e.g. 30,100), got {text!r}")
    # finite lengths >= 0: "nan,nan" and "0,inf" made a check that always passed
    lo, hi = (argtypes.non_negative(x) for x in parts)
    if lo > hi:
        raise argparse.ArgumentTypeError(f"LOW must not exceed HIGH, got {text!r}")
    return lo, hi


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", help="a data directory made by zhbert prepare")
    parser.add_argument("--json", action="store_true", help="print the report and checks as JSON")
    parser.add_argument("--min-sentences", type=argtypes.count(0), default=100_000)
    parser.add_argument("--min-vocab", type=argtypes.count(0), default=None,
                        help="minimum characters (word-initial tokens) in the vocabulary "
                             "(default per language: zh 10000, ja 3000, en 5000)")
    parser.add_argument("--avg-len", type=_avg_len, default=None, metavar="LOW,HIGH",
                        help="allowed average sentence length in characters "
                             "(default per language: zh 30,100, ja 20,100, en 40,250)")
    # a share: 5 (meant as 5%?) or nan made a check that always passed
    parser.add_argument("--max-dup-rate", type=argtypes.probability, default=0.05,
                        help="maximum share of repeated sentences, in [0, 1] (default 0.05)")


def run(args: argparse.Namespace) -> int:
    from zhbert.datadir import open_data_dir

    from zhbert.corpus.languages import get as language

    data = open_data_dir(args.data_dir)
    # report.json was cached at prepare time: its PASS says nothing of the arrays now on
    # disk, so check them the way train will (a missing or truncated one exits 2)
    data.check_arrays()
    report = data.report()
    lang = language(data.language)
    min_vocab = lang.report_min_vocab if args.min_vocab is None else args.min_vocab
    avg_len = lang.report_avg_len if args.avg_len is None else args.avg_len
    try:
        checks = run_checks(report, args.min_sentences, min_vocab, avg_len, args.max_dup_rate)
        text = None if args.json else render(report, checks, data.language)
    except (KeyError, TypeError) as exc:
        raise UserError(f"{data.path / 'report.json'} lacks figures ({exc}); it was written by "
                        "another zhbert version: re-run zhbert prepare") from None
    if args.json:
        print(json.dumps({"report": report, "checks": [c.__dict__ for c in checks]},
                         ensure_ascii=False, indent=2))
    else:
        print(text)
    return 0 if all(c.passed for c in checks) else 1
