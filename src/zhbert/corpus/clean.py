"""Cleaning and sentence splitting of documents (Chinese by default; see corpus.languages).

``clean_text`` normalises raw text in this order:

1. Unicode NFKC, except that CJK full-width punctuation survives: NFKC maps
   ，！？：；（）［］｛｝～ to ASCII and … to "...", which would make Chinese
   sentence ends look like English ones. Full-width digits and latin letters
   (０-９Ａ-Ｚａ-ｚ) do become ASCII and the ideographic space a plain space.
2. Control and zero-width characters removed (Unicode Cc/Cf, variation
   selectors); tabs become spaces, \\r\\n / \\r / U+2028 / U+2029 newlines.
   Steps 1 and 2 run as one pass: a translate table shields the protected
   punctuation (as private-use placeholders) and deletes the invisible
   characters, then NFKC runs, then the placeholders are mapped back.
3. URLs and e-mail addresses removed (``CleanConfig.remove_urls``).
4. Script conversion with OpenCC: t2s (default), s2t, or keep (Chinese only:
   other languages always keep).
5. Whitespace collapsed: runs of spaces become one, lines are stripped, blank
   lines dropped, and a space between two CJK characters (ideographs or CJK
   punctuation) is removed, as Chinese has none. Spaces between latin words stay.

``split_sentences`` then cuts at sentence-final punctuation and newlines (the
language's splitter: ``corpus.sentences`` for Japanese and English), and
``clean_document`` filters the sentences (length, the share of the language's
own script, duplicates within the document). A document stays one unit with its sentence list, since
NSP needs document boundaries.

Everything here is module-level and picklable: ``clean_document`` runs in
multiprocessing workers, and each process builds its OpenCC converter once.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any

from zhbert.corpus import languages
from zhbert.corpus.document import Document
from zhbert.corpus.sentences import split_english, split_japanese
from zhbert.errors import UserError

SCRIPTS = ("t2s", "s2t", "keep")


@dataclass(frozen=True)
class CleanConfig:
    script: str = "t2s"             # "t2s" (traditional -> simplified, OpenCC) | "s2t" | "keep"
    remove_urls: bool = True        # URLs and e-mail addresses
    min_sentence_chars: int = 5     # after cleaning
    max_sentence_chars: int = 256   # longer "sentences" are split at commas/semicolons, then hard-cut
    min_script_ratio: float = 0.5   # share of the language's script among non-space chars of a sentence
    min_document_sentences: int = 1
    language: str = languages.DEFAULT  # a code of corpus.languages.LANGUAGES

    def __post_init__(self) -> None:
        if self.script not in SCRIPTS:
            raise UserError(f"clean option script={self.script!r} is unknown; "
                            f"use one of {', '.join(SCRIPTS)}")
        if not 1 <= self.min_sentence_chars <= self.max_sentence_chars:
            raise UserError("clean options need 1 <= min_sentence_chars <= max_sentence_chars, "
                            f"got {self.min_sentence_chars} and {self.max_sentence_chars}")
        if not 0.0 <= self.min_script_ratio <= 1.0:
            raise UserError(f"clean option min_script_ratio={self.min_script_ratio} "
                            "must lie between 0 and 1")
        if self.script != "keep" and not languages.get(self.language).opencc:
            raise UserError(f"OpenCC script conversion ({self.script}) is for Chinese only; "
                            f"drop --script for --language {self.language}")
        if self.min_document_sentences < 1:
            raise UserError("clean option min_document_sentences must be at least 1")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def lang(self) -> languages.Language:
        return languages.get(self.language)

    @classmethod
    def from_json(cls, obj: dict) -> "CleanConfig":
        if "min_chinese_ratio" in obj:  # manifests written before --language existed
            obj = {**{k: v for k, v in obj.items() if k != "min_chinese_ratio"},
                   "min_script_ratio": obj["min_chinese_ratio"]}
        unknown = set(obj) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise UserError(f"unknown clean option(s) {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(f.name for f in dataclasses.fields(cls))}")
        return cls(**obj)

    @classmethod
    def recorded(cls, obj: dict | None, language: str) -> "CleanConfig":
        """The cleaning a model's text had: the options recorded (a data manifest's, an
        export's zhbert_clean), or for data from before they were, prepare's defaults for
        the language."""
        if obj:
            return cls.from_json(obj)
        return cls(script=languages.get(language).default_conversion, language=language)


@dataclass(frozen=True)
class CleanDocument:
    doc_id: str
    source: str
    tags: tuple[str, ...]
    sentences: tuple[str, ...]
    chars_in: int                    # raw input characters (markup included)
    chars_out: int                   # characters in the kept sentences
    # Filled for the deduplicator: exact_hash here, minhash by zhbert.corpus.dedup.sign()
    # in the worker, so that the main process only has to look things up.
    exact_hash: str = ""
    minhash: Any = dataclasses.field(default=None, compare=False, repr=False)


# ---------------------------------------------------------------- character classes
# The classes and patterns without a leading underscore are also the exported tokenizer's
# (export_tokenizer.clean_normalizer spells clean_text as a tokenizers normalizer from them).

# CJK ideographs: Ext A, URO, compatibility block, and Ext B.. (planes 2-3).
_IDEO = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
# Characters that count as "CJK" when deciding whether a space between them is
# typographic noise: ideographs, CJK symbols/punctuation, full-width forms,
# curly quotes, dashes, ellipsis and the middle dot.
CJKISH = _IDEO + "\u3000-\u303f\uff00-\uffef\u2018-\u201f\u2014\u2026\u00b7"
_NON_IDEO_RE = re.compile(f"[^{_IDEO}]")
# One space (runs are collapsed first) between two CJK characters; the pattern
# starts with the space itself so that the regex engine can skip ahead to it.
_CJK_SPACE_RE = re.compile(f" (?<=[{CJKISH}] )(?=[{CJKISH}])")
SPACES_RE = re.compile(" {2,}")
BLANK_LINES_RE = re.compile(r" *\n[ \n]*")

PROTECTED = "，！？：；（）［］｛｝～…‥"
# Stand-ins from the supplementary private-use plane, which NFKC leaves alone.
SHIELD = tuple((ch, chr(0xF0000 + i)) for i, ch in enumerate(PROTECTED))
NEWLINES_RE = re.compile("\r\n?|[\x85\u2028\u2029]")
TABS_RE = re.compile("[\t\x0b\x0c]")


@functools.cache
def invisible_re() -> re.Pattern:
    """Control/format characters (Cc/Cf), variation selectors, and our stand-ins."""
    bmp = "".join(chr(c) for c in range(0x10000)
                  if unicodedata.category(chr(c)) in ("Cc", "Cf") and chr(c) not in "\n\t")
    extra = "\ufe00-\ufe0f\U000e0000-\U000e007f\U000e0100-\U000e01ef\U000f0000-\U000f00ff"
    return re.compile(f"[{re.escape(bmp)}{extra}]")


def _nfkc_keep_cjk_punct(text: str) -> str:
    """NFKC, but CJK punctuation keeps its full-width form (see module docstring)."""
    for ch, stand_in in SHIELD:
        text = text.replace(ch, stand_in)
    if not unicodedata.is_normalized("NFKC", text):
        # Per line: most lines of Chinese text are already normalised once shielded.
        text = "\n".join(line if unicodedata.is_normalized("NFKC", line)
                         else unicodedata.normalize("NFKC", line) for line in text.split("\n"))
    for ch, stand_in in SHIELD:
        text = text.replace(stand_in, ch)
    return text


# URLs with a scheme or a leading www., and e-mail addresses; ASCII only, so a
# URL ends at the first Chinese character. Trailing ASCII punctuation is left.
# The e-mail part only starts at the start of a run (no quadratic backtracking).
URL_RE = re.compile(
    r"(?:(?:https?|ftp)://|www\.)[\w\-.~:/?#\[\]@!$&'*+,;=%]*[\w/#=&%~+\-]"
    r"|(?<![\w.+\-])[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+",
    re.ASCII,
)


@functools.cache
def _converter(script: str):
    """One OpenCC converter per process and direction (created lazily, in the worker)."""
    import opencc

    return opencc.OpenCC(script)


def clean_text(text: str, cfg: CleanConfig) -> str:
    """Normalise ``text`` (steps 1-5 of the module docstring); newlines are kept."""
    text = TABS_RE.sub(" ", NEWLINES_RE.sub("\n", text))
    text = _nfkc_keep_cjk_punct(invisible_re().sub("", text))
    if cfg.remove_urls and ("@" in text or "://" in text or "www." in text):
        text = URL_RE.sub("", text)
    if cfg.script != "keep":
        text = _converter(cfg.script).convert(text)
    text = SPACES_RE.sub(" ", text)  # NFKC has turned all other spaces into " "
    text = _CJK_SPACE_RE.sub("", text)
    return BLANK_LINES_RE.sub("\n", text).strip(" \n")


# ---------------------------------------------------------------- sentences

# A sentence ends at 。！？；!?; or an ellipsis (…/……/...), together with any
# closing quotes or brackets that follow. 。 between two digits is not an end
# (a decimal point in badly converted text); a single ASCII "." never is.
# The body is written as "runs of non-terminators" rather than a lazy ".*?",
# which makes the scan about 4x faster.
_TERM = r"(?:[！？；!?;]|。(?:(?!\d)|(?<!\d。))|…+|\.{3,})"
_BODY = r"(?:[^\n！？；!?;。….]+|(?<=\d)。(?=\d)|\.(?!\.\.))*"
_CLOSE = r"[”’」』）》】\"')\]]"
_SENTENCE_RE = re.compile(rf"{_BODY}(?:{_TERM}+{_CLOSE}*)?")
_CLAUSE_RE = re.compile(r"[^，、；：,;:]*[，、；：,;:]+|[^，、；：,;:]+")


def split_sentences(text: str) -> list[str]:
    """Split at sentence-final punctuation; a newline always ends a sentence.

    >>> split_sentences("他说：“好。”然后走了。")
    ['他说：“好。”', '然后走了。']
    """
    out = []
    for m in _SENTENCE_RE.finditer(text):
        s = m.group().strip()
        if s:
            out.append(s)
    return out


def split_long(sentence: str, max_chars: int) -> list[str]:
    """Cut an over-long sentence at clause punctuation (，、；：), packing clauses
    greedily up to ``max_chars``; a clause still too long is hard-cut."""
    if len(sentence) <= max_chars:
        return [sentence]
    pieces, cur = [], ""
    for clause in _CLAUSE_RE.findall(sentence):
        if len(cur) + len(clause) <= max_chars:
            cur += clause
            continue
        if cur:
            pieces.append(cur)
        while len(clause) > max_chars:
            pieces.append(clause[:max_chars])
            clause = clause[max_chars:]
        cur = clause
    if cur:
        pieces.append(cur)
    return [p.strip() for p in pieces if p.strip()]


def chinese_ratio(s: str) -> float:
    """Share of CJK ideographs among the non-space characters of ``s`` (0.0 if none)."""
    n = len("".join(s.split()))
    # Counting the (few) non-ideographs is ~4x faster than counting the ideographs.
    return (len(s) - len(_NON_IDEO_RE.findall(s))) / n if n else 0.0


_NON_WORD_RE = re.compile(r"[\W_]+")


def normalize_for_hash(sentence: str) -> str:
    """Key for exact-duplicate detection: case-folded, without whitespace or punctuation."""
    return _NON_WORD_RE.sub("", sentence).casefold()


def _hash_keys(keys) -> str:
    return hashlib.blake2b("".join(keys).encode("utf-8"), digest_size=16).hexdigest()


def content_hash(sentences) -> str:
    """Hash of the normalised full text (what exact document dedup compares)."""
    return _hash_keys(normalize_for_hash(s) for s in sentences)


# ---------------------------------------------------------------- documents

def _filter_sentences(sentences: list[str], cfg: CleanConfig) -> tuple[list[str], list[str], dict[str, int]]:
    """(kept sentences, their hash keys, reason -> dropped count)."""
    kept, keys, dropped = [], {}, {}
    lang = cfg.lang
    ratio = chinese_ratio if lang.code == "zh" else lang.script_ratio  # the same figure for zh
    for s in sentences:
        if len(s) < cfg.min_sentence_chars:
            reason = "too_short"
        elif ratio(s) < cfg.min_script_ratio:
            reason = lang.drop_reason
        else:
            key = normalize_for_hash(s)
            if key not in keys:
                keys[key] = None
                kept.append(s)
                continue
            reason = "duplicate"
        dropped[reason] = dropped.get(reason, 0) + 1
    return kept, list(keys), dropped


def _plain_text(doc: Document, cfg: CleanConfig) -> tuple[str, tuple[str, ...]] | None:
    """The document's plain text and tags; wikitext is converted (None = skip the page)."""
    if doc.markup == "plain":
        return doc.text, doc.tags
    if doc.markup != "wikitext":
        raise ValueError(f"unknown markup {doc.markup!r} in document {doc.doc_id}")
    from zhbert.corpus import wiki  # the markup parser is heavy; only workers need it

    converted = wiki.wikitext_to_text(doc.text, cfg.language)
    if converted is None:
        return None
    text, categories = converted
    if cfg.script != "keep":
        categories = [_converter(cfg.script).convert(c) for c in categories]
    tags = doc.tags + tuple(c for c in dict.fromkeys(categories) if c not in doc.tags)
    return text, tags


def clean_document(doc: Document, cfg: CleanConfig, script_counts: list[int] | None = None,
                   dropped_out: Counter | None = None) -> CleanDocument | None:
    """Clean, split and filter one document; None when nothing (or too little) is left.

    ``script_counts`` ([sentences, dropped by the script filter]) and ``dropped_out`` (the
    sentences dropped, by reason: too_short, low_chinese|low_script, duplicate) are added
    to, a batch's worth at a time (prepare_tasks), even for a document that is dropped whole:
    the share tells a wrong --language (prepare warns), and the report's dropped sentences
    left out every one of a document of only short lines.
    """
    plain = _plain_text(doc, cfg)
    if plain is None:
        return None
    text, tags = plain
    sentences = []
    for s in _SPLITTERS[cfg.lang.splitter](clean_text(text, cfg)):
        sentences.extend(split_long(s, cfg.max_sentence_chars))
    kept, keys, dropped = _filter_sentences(sentences, cfg)
    if script_counts is not None:
        script_counts[0] += len(sentences)
        script_counts[1] += dropped.get(cfg.lang.drop_reason, 0)
    if dropped_out is not None:
        dropped_out.update(dropped)
    if len(kept) < cfg.min_document_sentences:
        return None
    return CleanDocument(
        doc_id=doc.doc_id, source=doc.source, tags=tags, sentences=tuple(kept),
        chars_in=len(doc.text), chars_out=sum(map(len, kept)), exact_hash=_hash_keys(keys),
    )


_SPLITTERS = {"zh": split_sentences, "ja": split_japanese, "en": split_english}
