"""Sentence splitting for Japanese and English (Chinese: ``clean.split_sentences``).

Both take cleaned text (newlines kept) and return stripped sentences; a newline
always ends a sentence, as for Chinese.

Japanese ends a sentence at 。！？!?． outside brackets (「…。」 and （…。） do
not end it), together with the closing brackets after it, unless the
quotative particle と/って follows (「行こう。」と言った。 is one sentence). An
ellipsis does not end a Japanese sentence (it often sits inside one), and
ASCII quotes are not brackets (the same character opens and closes).

English ends a sentence at . ? ! (and closing quotes/brackets) followed by
whitespace and then not a lower-case letter, except after a known
abbreviation (Mr. Dr. e.g. U.S. ...; No. and vol. only before a number) or a
single capital initial (J. Smith).
A decimal point or a dotted number (3.14, 1.2.3) has no space after it, so it
never ends a sentence.
"""

from __future__ import annotations

import re

_JA_TERMINATORS = frozenset("。！？!?．")
_JA_OPEN = "「『（(【〔〈《［｛"
_JA_CLOSE = "」』）)】〕〉》］｝"
_JA_QUOTATIVE = ("と", "って")
_JA_MAX_DEPTH_CHARS = 512  # an unclosed bracket stops shielding its terminators after this


def _ja_line(line: str) -> list[str]:
    """Cut one line: at a terminator outside brackets, with the closing brackets after it."""
    out, start, depth, opened = [], 0, 0, 0
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in _JA_OPEN:
            depth, opened = depth + 1, (i if depth == 0 else opened)
        elif c in _JA_CLOSE and depth:
            depth -= 1
        elif depth and i - opened > _JA_MAX_DEPTH_CHARS:
            depth = 0  # an unbalanced bracket: do not let it swallow the paragraph
        if c in _JA_TERMINATORS and depth == 0:
            while i + 1 < n and line[i + 1] in _JA_TERMINATORS:
                i += 1
            while i + 1 < n and line[i + 1] in _JA_CLOSE:
                i += 1
            if not line.startswith(_JA_QUOTATIVE, i + 1):
                out.append(line[start:i + 1])
                start = i + 1
        i += 1
    out.append(line[start:])
    return out


def split_japanese(text: str) -> list[str]:
    """>>> split_japanese("彼は「行こう。すぐに。」と言った。雨だ！")
    ['彼は「行こう。すぐに。」と言った。', '雨だ！']
    """
    return [s.strip() for line in text.split("\n") for s in _ja_line(line) if s.strip()]


# Lower-cased, without the final ".": a "." after these does not end a sentence.
ABBREVIATIONS = frozenset("""
mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e cf al inc ltd co corp no nos vol fig figs
gen col lt sgt capt cmdr adm gov sen rep rev hon pres jan feb mar apr jun jul aug sep sept
oct nov dec approx dept est ca u.s u.k u.n a.m p.m ph.d b.a m.a eds
""".split())
# ... and these only before a number ("No. 5", "vol. 2"): "said no." ends a sentence
NUMBER_ABBREVIATIONS = frozenset("no nos vol fig figs pp op ed art sec ch".split())
_EN_END_RE = re.compile(r"[.?!]+[\"'”’)\]]*(?=\s|$)")
_WORD_BEFORE_RE = re.compile(r"(\S+)$")


def _is_abbreviation(line: str, dot: int) -> bool:
    """True when the "." at ``dot`` closes an abbreviation or an initial."""
    m = _WORD_BEFORE_RE.search(line, 0, dot)
    if m is None:
        return False
    word = m.group(1).lstrip("\"'“‘([")
    if word.lower() in NUMBER_ABBREVIATIONS:
        return line[dot + 1:].lstrip()[:1].isdigit()
    return word.lower() in ABBREVIATIONS or (len(word) == 1 and word.isupper())


def split_english(text: str) -> list[str]:
    """>>> split_english("Dr. Smith paid $3.50 at 5 p.m. on Jan. 2. He left!")
    ['Dr. Smith paid $3.50 at 5 p.m. on Jan. 2.', 'He left!']
    """
    out: list[str] = []
    for line in text.split("\n"):
        start = 0
        for m in _EN_END_RE.finditer(line):
            rest = line[m.end():].lstrip()
            if rest and rest[0].islower():
                continue  # "etc. and", "approx. three": the sentence goes on
            if m.group()[0] == "." and len(m.group().rstrip("\"'”’)]")) == 1 \
                    and _is_abbreviation(line, m.start()):
                continue
            out.append(line[start:m.end()])
            start = m.end()
        out.append(line[start:])
    return [s.strip() for s in out if s.strip()]
