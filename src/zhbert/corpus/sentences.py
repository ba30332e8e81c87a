"""Sentence splitting for Japanese and English (Chinese: ``clean.split_sentences``).

Both take cleaned text (newlines kept) and return stripped sentences; a newline
always ends a sentence, as for Chinese.

Japanese ends a sentence at 。！？!?． or an ellipsis, together with any closing
brackets and quotes after it (」』）】〕〉》” ...), except inside a quotation
that the sentence goes on from: 「行こう。」と言った。 stays one sentence (a
closing bracket followed by the quotative particle と or って).

English ends a sentence at . ? ! (and closing quotes/brackets) followed by
whitespace and then not a lower-case letter, except after a known
abbreviation (Mr. Dr. e.g. U.S. ...) or a single capital initial (J. Smith).
A decimal point or a dotted number (3.14, 1.2.3) has no space after it, so it
never ends a sentence.
"""

from __future__ import annotations

import re

_JA_TERM = r"(?:[。！？!?．]|…+|\.{3,})"
_JA_CLOSE = r"[」』）】〕〉》”’\"')\]]"
_JA_BODY = r"(?:[^\n。！？!?．….]+|\.(?!\.\.))*"
_JA_SENTENCE_RE = re.compile(rf"{_JA_BODY}(?:{_JA_TERM}+{_JA_CLOSE}*)?")
_JA_QUOTATIVE_RE = re.compile(r"と|って")


def split_japanese(text: str) -> list[str]:
    """>>> split_japanese("「行こう。」と言った。雨だ！")
    ['「行こう。」と言った。', '雨だ！']
    """
    out: list[str] = []
    glue = False  # the previous piece ended in a closing bracket that the next one continues
    for line in text.split("\n"):
        glue = False
        for m in _JA_SENTENCE_RE.finditer(line):
            s = m.group()
            if not s.strip():
                continue
            if glue and out:
                out[-1] += s
            else:
                out.append(s)
            glue = bool(re.search(f"{_JA_CLOSE}$", s)) and bool(
                _JA_QUOTATIVE_RE.match(line, m.end()))
    return [s.strip() for s in out if s.strip()]


# Lower-cased, without the final ".": a "." after these does not end a sentence.
ABBREVIATIONS = frozenset("""
mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e cf al inc ltd co corp no nos vol fig figs
gen col lt sgt capt cmdr adm gov sen rep rev hon pres jan feb mar apr jun jul aug sep sept
oct nov dec approx dept est ca u.s u.k u.n a.m p.m ph.d b.a m.a op pp ed eds
""".split())
_EN_END_RE = re.compile(r"[.?!]+[\"'”’)\]]*(?=\s|$)")
_WORD_BEFORE_RE = re.compile(r"(\S+)$")


def _is_abbreviation(line: str, dot: int) -> bool:
    """True when the "." at ``dot`` closes an abbreviation or an initial."""
    m = _WORD_BEFORE_RE.search(line, 0, dot)
    if m is None:
        return False
    word = m.group(1).lstrip("\"'“‘([")
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
