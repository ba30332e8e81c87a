"""Vocabulary in BERT's vocab.txt format (character-level, or WordPiece), and its encoder.

Layout: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4, then tokens by
descending frequency (ties by codepoint). Tokens are single characters; a
non-CJK character that continues a latin/digit word is stored as "##c", exactly
as BERT's WordPiece would produce it over a character vocabulary, so that
``transformers.BertTokenizerFast(vocab=PATH, do_lower_case=False)`` yields the
same ids as ``Vocab.encode``. (transformers 5 silently ignores ``vocab_file=``
in that constructor and maps everything to [UNK]; pass ``vocab=`` or use
``from_pretrained(DIR)``.)

A WordPiece vocabulary (``zhbert.wordpiece``, trained with Hugging Face
``tokenizers``) uses the same file layout and the same encoder: greedy
longest-match-first WordPiece is BERT's algorithm whatever the pieces are
(tests/test_vocab.py compares it with BertTokenizerFast too).

The encoder re-implements BERT's tokenizer (clean_text, CJK isolation,
punctuation split, greedy WordPiece, do_lower_case=False) with C-speed regular
expressions: it is about ten times faster than calling the Rust tokenizer from
Python for this character-level case, and tests/test_vocab.py checks it against
the HF tokenizer on every Unicode codepoint and on real cleaned text.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import string
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np

from zhbert.errors import UserError
from zhbert.fileio import atomic_write_text

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
MAX_WORD_CHARS = 100  # BERT's WordPiece turns longer words into one [UNK]
DEFAULT_MAX_SIZE = 21128  # bert-base-chinese's vocabulary size

# The ranges BERT (and HF tokenizers) treat as CJK ideographs: each one becomes a word.
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
# HF's Rust tokenizer classifies characters with Unicode tables older than
# Python's: these codepoints, assigned or recategorised since (obscure scripts,
# none used in Chinese), are plain word characters to it, and two are isolated
# as punctuation. tests/test_vocab.py checks every codepoint against HF (slow test).
_HF_WORD_CHARS = (
    (0x61D, 0x61D), (0x890, 0x891), (0x8E2, 0x8E2), (0x9FD, 0x9FD), (0xA76, 0xA76),
    (0xC77, 0xC77), (0xC84, 0xC84), (0x1B7D, 0x1B7E), (0x2E43, 0x2E4F), (0x2E52, 0x2E5D),
    (0x10EAD, 0x10EAD), (0x10F55, 0x10F59), (0x10F86, 0x10F89), (0x110CD, 0x110CD),
    (0x1144B, 0x1144F), (0x1145A, 0x1145B), (0x1145D, 0x1145D), (0x11660, 0x1166C),
    (0x116B9, 0x116B9), (0x1183B, 0x1183B), (0x11944, 0x11946), (0x119E2, 0x119E2),
    (0x11A3F, 0x11A46), (0x11A9A, 0x11A9C), (0x11A9E, 0x11AA2), (0x11C41, 0x11C45),
    (0x11C70, 0x11C71), (0x11EF7, 0x11EF8), (0x11FFF, 0x11FFF), (0x12FF1, 0x12FF2),
    (0x13430, 0x13438), (0x16E97, 0x16E9A), (0x16FE2, 0x16FE2), (0x1E95E, 0x1E95F))
_HF_PUNCT = (0x166D, 0x111C9)
# HF matches added (special) tokens in the raw text before anything else, so a literal
# "[MASK]" typed into fill-mask becomes the [MASK] id; we do the same for parity. A corpus
# is read with specials=False (HF's encode_special_tokens): an article about BERT that
# quotes "[MASK]" or "[SEP]" fed the model its structural ids inside sentences.
_CLOSING = frozenset(".,;:!?)]}%-'/")  # no space before these when decoding spaced text
_OPENING = frozenset("([{$-'/")          # nor after these ("left-wing", "don't", "and/or")
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")


# ---------------------------------------------------------------- character classes

def _char_class(codepoints: list[int]) -> str:
    """A regex character class ("[...]") matching exactly ``codepoints`` (sorted)."""
    parts, start = [], None
    for i, c in enumerate(codepoints):
        if start is None:
            start = c
        if i + 1 == len(codepoints) or codepoints[i + 1] != c + 1:
            parts.append(re.escape(chr(start)) + ("-" + re.escape(chr(c)) if c > start else ""))
            start = None
    return "[" + "".join(parts) + "]"


@functools.cache
def _patterns() -> tuple[re.Pattern, re.Pattern, frozenset]:
    """(word pattern, removed-chars pattern, isolated chars) -- built once per process.

    BERT's normalizer drops NUL, U+FFFD and control/format/private-use characters
    (Cc Cf Co Cs, except \\t \\n \\r) and turns whitespace into spaces; its pre-tokenizer then
    isolates every CJK ideograph and punctuation character (ASCII punctuation
    plus Unicode P*), and keeps runs of anything else as one word. Removed
    characters inside such a run do not split it, hence ``removed*`` in the run.
    """
    removed, isolated, word = [], [], []
    isolate, hf_word = set(_HF_PUNCT), set()
    for lo, hi in _CJK_RANGES:
        isolate.update(range(lo, hi + 1))
    for lo, hi in _HF_WORD_CHARS:
        hf_word.update(range(lo, hi + 1))
    for cp in range(sys.maxunicode + 1):
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if cp in hf_word:
            word.append(cp)
        elif ch not in "\t\n\r" and (cp in (0, 0xFFFD) or cat in ("Cc", "Cf", "Co", "Cs")):
            removed.append(cp)  # unassigned (Cn) characters survive, as in HF
        elif ch.isspace():
            continue
        elif cp in isolate or cat[0] == "P" or (ch.isascii() and ch in string.punctuation):
            isolated.append(cp)
        else:
            word.append(cp)
    rm, iso, wd = _char_class(removed), _char_class(isolated), _char_class(word)
    return (re.compile(f"{iso}|{wd}(?:{wd}|{rm})*"), re.compile(rm),
            frozenset(map(chr, isolated)))


def _segments(text: str, specials: bool = True) -> Iterator[tuple[str, int, bool]]:
    """(piece, offset, is_special): the text cut around literal special tokens (with
    ``specials``; without, the text is one ordinary piece)."""
    if not specials:
        if text:
            yield text, 0, False
        return
    pos = 0
    for m in _SPECIAL_RE.finditer(text):
        if m.start() > pos:
            yield text[pos:m.start()], pos, False
        yield m.group(), m.start(), True
        pos = m.end()
    if pos < len(text):
        yield text[pos:], pos, False


@functools.lru_cache(maxsize=1)
def _word_split_re() -> tuple[re.Pattern, re.Pattern]:
    """(BERT's word pattern in a capturing group, for re.split; removed-characters pattern)."""
    word_re, removed_re, _ = _patterns()
    return re.compile(f"({word_re.pattern})"), removed_re


def _words(text: str, specials: bool = True) -> list[str]:
    """BERT's words of ``text`` (special tokens included as themselves with ``specials``), fast."""
    word_re, removed_re, _ = _patterns()
    words: list[str] = []
    for piece, _, special in _segments(text, specials):
        if special:
            words.append(piece)
        else:
            words.extend(w if len(w) == 1 else removed_re.sub("", w) for w in word_re.findall(piece))
    return words


def bert_words(text: str, specials: bool = True) -> Iterator[tuple[str, int]]:
    """(word, char offset in ``text``) as BERT's basic tokenizer splits ``text``."""
    word_re, removed_re, _ = _patterns()
    for piece, offset, special in _segments(text, specials):
        if special:
            yield piece, offset
            continue
        for m in word_re.finditer(piece):
            w = m.group()
            yield (w if len(w) == 1 else removed_re.sub("", w)), offset + m.start()


def word_units(word: str) -> list[str]:
    """The character-level WordPiece units of one word: "abc" -> a, ##b, ##c."""
    return [word[0]] + ["##" + c for c in word[1:]]


def count_units(texts: Iterable[str], counts: Counter | None = None,
                specials: bool = True) -> Counter:
    """Add to ``counts`` the units the encoder will look up (the vocabulary is built from these).

    Special tokens and words longer than MAX_WORD_CHARS (one [UNK] whole) are not counted;
    with ``specials=False`` (a corpus) a literal "[MASK]" counts as the text it is.
    """
    counts = Counter() if counts is None else counts
    words: Counter = Counter()
    for text in texts:
        words.update(_words(text, specials))  # C-speed for the common case: single CJK characters
    for w, n in words.items():
        if len(w) == 1:
            counts[w] += n
        elif w not in SPECIAL_TOKENS and len(w) <= MAX_WORD_CHARS:
            for u in word_units(w):
                counts[u] += n
    return counts


# ---------------------------------------------------------------- vocabulary

def build_vocab(unit_counts: Mapping[str, int], min_freq: int = 1,
                max_size: int = DEFAULT_MAX_SIZE) -> "Vocab":
    """Specials, then units seen >= ``min_freq`` times, most frequent first.

    ``max_size`` counts the special tokens too (21128 = bert-base-chinese).
    Ties are broken by codepoint order so the result is deterministic.
    """
    if min_freq < 1:
        raise UserError(f"--min-freq must be at least 1, got {min_freq}")
    if max_size <= len(SPECIAL_TOKENS):
        raise UserError(f"--max-vocab must exceed the {len(SPECIAL_TOKENS)} special tokens, "
                        f"got {max_size}")
    ranked = sorted(((-n, u) for u, n in unit_counts.items()
                     if n >= min_freq and u not in SPECIAL_TOKENS))
    return Vocab(SPECIAL_TOKENS + tuple(u for _, u in ranked[: max_size - len(SPECIAL_TOKENS)]))


@dataclass(frozen=True)
class Vocab:
    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        if tuple(self.tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise UserError("vocabulary must start with " + ", ".join(SPECIAL_TOKENS))
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(self.tokens)})
        # word -> WordPiece ids: English text repeats its words (a few MB per worker at most)
        object.__setattr__(self, "_pieces", {})

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, token: str) -> int:
        """Id of ``token``; the [UNK] id when it is not in the vocabulary."""
        return self._index.get(token, 1)  # type: ignore[attr-defined]

    def __contains__(self, token: str) -> bool:
        return token in self._index  # type: ignore[attr-defined]

    pad_id = property(lambda self: 0)
    unk_id = property(lambda self: 1)
    cls_id = property(lambda self: 2)
    sep_id = property(lambda self: 3)
    mask_id = property(lambda self: 4)
    # [PAD], [CLS], [SEP], [MASK] mark a sequence's structure: never the text a [MASK] hides
    # ([UNK] can be: a character outside the vocabulary)
    structural_ids = property(lambda self: (0, 2, 3, 4))

    @property
    def num_chars(self) -> int:
        """Distinct characters a word can start with (the seed's "characters in vocab")."""
        return sum(1 for t in self.tokens[len(SPECIAL_TOKENS):] if not t.startswith("##"))

    @property
    def sha256(self) -> str:
        return hashlib.sha256("\n".join(self.tokens).encode("utf-8")).hexdigest()

    # -- encoding ----------------------------------------------------------------

    def _wordpiece(self, word: str) -> list[int]:
        """Greedy longest-match-first WordPiece, as BERT does it (one [UNK] on failure)."""
        cache = self._pieces  # type: ignore[attr-defined]
        ids = cache.get(word)
        if ids is None:
            ids = self._wordpiece_uncached(word)
            if len(cache) < 1 << 18:
                cache[word] = ids
        return ids

    def _wordpiece_uncached(self, word: str) -> list[int]:
        index = self._index  # type: ignore[attr-defined]
        if len(word) > MAX_WORD_CHARS:
            return [1]
        ids, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in index:
                    ids.append(index[piece])
                    start = end
                    break
            else:
                return [1]
        return ids

    def encode(self, text: str, specials: bool = True) -> list[int]:
        """Token ids of ``text``, no special tokens added; equal to HF BertTokenizerFast's
        (with ``specials=False``, to its split_special_tokens=True)."""
        index = self._index  # type: ignore[attr-defined]
        ids: list[int] = []
        for w in _words(text, specials):
            if len(w) == 1:  # the hot path: one CJK character or punctuation
                ids.append(index.get(w, 1))
            elif w in SPECIAL_TOKENS:
                ids.append(index[w])
            else:
                ids.extend(self._wordpiece(w))
        return ids

    def encode_with_offsets(self, text: str, specials: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(ids, char offset in ``text`` of the word each id comes from / starts), int64.
        ``specials=False`` (a corpus): a literal "[MASK]" is encoded as text, not as [MASK].

        Continuation pieces ("##c", "##ing") get the offset of their own first
        character, so an id starts a word of some segmentation iff its offset is a
        word start (a whole-word [UNK] gets the word's offset).
        Built for long texts (prepare encodes a batch of sentences per call): one
        C-level ``re.split`` per special-token-free segment, not a step per word.
        """
        id_parts, off_parts = [], []
        for piece, base, special in _segments(text, specials):
            if special:
                id_parts.append(np.array([self._index[piece]], np.int64))  # type: ignore[attr-defined]
                off_parts.append(np.array([base], np.int64))
            else:
                ids, offs = self._encode_piece(piece, base)
                id_parts.append(ids)
                off_parts.append(offs)
        if not id_parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(id_parts), np.concatenate(off_parts)

    def _encode_piece(self, piece: str, base: int) -> tuple[np.ndarray, np.ndarray]:
        split_re, removed_re = _word_split_re()
        parts = split_re.split(piece)  # [gap, word, gap, word, ..., gap]
        words = parts[1::2]
        lens = np.fromiter(map(len, parts), np.int64, len(parts))
        offsets = (np.cumsum(lens) - lens)[1::2] + base
        index = self._index  # type: ignore[attr-defined]
        ids = np.fromiter(map(index.get, words, itertools.repeat(self.unk_id)), np.int64, len(words))
        multi = np.flatnonzero(lens[1::2] > 1).tolist()  # latin/digit runs: WordPiece
        if not multi:
            return ids, offsets
        id_parts, off_parts, prev = [], [], 0
        for j in multi:
            w, o = removed_re.sub("", words[j]), int(offsets[j])
            if len(w) > 1:
                pieces = self._wordpiece(w)
                offs = self._piece_offsets(pieces, o)
            else:
                pieces, offs = [self.id(w)], [o]
            id_parts += [ids[prev:j], np.asarray(pieces, np.int64)]
            off_parts += [offsets[prev:j], np.asarray(offs, np.int64)]
            prev = j + 1
        return np.concatenate(id_parts + [ids[prev:]]), np.concatenate(off_parts + [offsets[prev:]])

    def _piece_offsets(self, pieces: list[int], offset: int) -> list[int]:
        """Where each WordPiece piece of a word starting at ``offset`` starts."""
        out = []
        for i in pieces:
            out.append(offset)
            tok = self.tokens[i]
            offset += len(tok) - 2 if tok.startswith("##") else len(tok)
        return out

    def decode(self, ids: Iterable[int], spaced: bool = False) -> str:
        """Text that encodes back to ``ids``: "##x" joined, spaces only between words.

        ``spaced``: English typography instead, which encodes back the same (BERT splits
        punctuation with or without spaces): a space between tokens, except before a
        "##" piece or closing punctuation, after opening punctuation, and next to
        CJK characters and punctuation.
        """
        if spaced:
            return self._decode_spaced(ids)
        _, _, isolated = _patterns()
        out: list[str] = []
        prev_wordish = False
        for i in ids:
            tok = self.tokens[int(i)]
            if tok.startswith("##") and len(tok) > 2:
                out.append(tok[2:])
                continue
            special = tok in SPECIAL_TOKENS
            wordish = not special and tok[0] not in isolated
            if wordish and prev_wordish:
                out.append(" ")  # two words of latin/digits: BERT split them at a space
            out.append(tok)
            prev_wordish = wordish and tok[-1] not in isolated
        return "".join(out)

    def _decode_spaced(self, ids: Iterable[int]) -> str:
        _, _, isolated = _patterns()
        out: list[str] = []
        prev = prev2 = ""
        for i in ids:
            tok = self.tokens[int(i)]
            if tok.startswith("##") and len(tok) > 2:
                out.append(tok[2:])
            else:
                number = prev in ".," and prev2[-1:].isdigit() and tok[0].isdigit()  # 3.5, 1,000
                tight = not out or number or tok in _CLOSING or prev in _OPENING or any(
                    t in isolated and not t.isascii() for t in (tok, prev))
                out.append(tok if tight else " " + tok)
            prev2, prev = prev, tok
        return "".join(out)

    # -- files -------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, "\n".join(self.tokens) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"vocabulary file not found: {path}") from None
        except IsADirectoryError:
            raise UserError(f"{path} is a folder, not a file: the vocabulary must be a text file; "
                            "recreate it with zhbert prepare") from None
        except UnicodeDecodeError:
            raise UserError(f"vocabulary file {path} is not UTF-8; recreate it with zhbert prepare") from None
        except OSError as exc:  # unreadable (permissions, I/O)
            raise UserError(f"cannot read vocabulary file {path} ({exc.strerror or exc})") from None
        tokens = tuple(line for line in text.split("\n") if line != "")
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            what = "is empty" if not text.strip() else "is not a zhbert vocabulary"
            raise UserError(f"{path} {what} (it must start with "
                            f"{', '.join(SPECIAL_TOKENS)}); recreate it with zhbert prepare")
        return cls(tokens)
