"""Which encoding a Chinese text file is in, from a prefix of its bytes.

Chinese text comes as UTF-8, GB18030/GBK, Big5 or UTF-16. A BOM or NUL bytes
settle UTF-8/UTF-16, and bytes that are UTF-8 (bar a little damage) are UTF-8.
Otherwise each strict decoding of the prefix is scored by how much it reads as
Chinese: GBK bytes read as Big5 (or the reverse) still decode, but into rarer
characters, bopomofo and private-use code points, while the right codec gives
the characters that fill everyday writing. charset-normalizer breaks near ties
on prefixes long enough for its statistics.
"""

from __future__ import annotations

import codecs
import functools
import re

import charset_normalizer

# charset-normalizer's answer -> the codec we record; GBK/GB2312 text decodes as its
# superset GB18030, Big5 as Big5-HKSCS (Hong Kong's superset)
CANONICAL = {"gbk": "gb18030", "gb2312": "gb18030", "hz": "gb18030", "big5": "big5",
             "cp950": "big5", "big5hkscs": "big5", "utf-8": "utf-8", "ascii": "utf-8"}
DECODE_AS = {"utf-8": "utf-8-sig", "big5": "big5hkscs"}  # utf-8-sig drops a BOM
CHINESE = ["gb18030", "big5", "big5hkscs", "cp950"]
ALLOWED_CONTROL = frozenset("\t\n\r\f\v")
# the decodings tried, in order of preference when they tie (a tie goes to GB18030 over
# Big5: a GB2312 text without any byte outside Big5's ranges decodes as both). cp950 is
# Big5 as Windows writes it: Big5-HKSCS lacks 7 of its pairs (A3E1 €, C6CF-C6DF kana)
# and reads 255 others as other characters (A1E3 ～ as ∼, A244 ￥ as ¥; counted over all
# two-byte cells with Python's codecs), so a prefix only cp950 decodes is recorded cp950.
BYTE_CANDIDATES = ("utf-8", "gb18030", "big5", "cp950")
CANDIDATES = (*BYTE_CANDIDATES, "utf-16-le", "utf-16-be")
DETECTOR_SLACK = 0.9  # the detector decides between decodings scoring within 90% of the best
# ... on heads of at least this many bytes: on 4,017 strings of 2-4 characters cut from
# tests/test_encoding.py's sentences (GBK, and Big5 for traditional) consulting it on near
# ties got 169 wrong, leaving ties to CANDIDATES' order 109 (36 of them valid UTF-8)
DETECTOR_MIN = 1024
# UTF-8 with at most one undecodable sequence per 10 multibyte characters is UTF-8 with
# some damage (decoding then names the first bad byte; tests/test_sources.py has 2 per 600,
# a review's Chinese file with a cp1252 quote pair a line 400 per 6,000). Legacy text is far
# from it: the 64 KB GBK and Big5 texts of tests/test_encoding.py read as UTF-8 give 3 to 9
# undecodable sequences per multibyte character, 谢谢老板！ 1 per 4.
UTF8_DAMAGE = 0.1
# a byte below "0" is never inside a multibyte character of UTF-8, GB18030 (whose
# 4-byte form uses 0x30-0x39) or Big5: cutting after one never splits a character
_LAST_BOUNDARY = re.compile(rb"[\x00-\x2f][^\x00-\x2f]*\Z")


class NotText(Exception):
    """A file we cannot read as text; the message completes "<path> ...", and ends in
    ``fix`` where the reason has its own (a reader adds its generic fix only without one)."""

    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message + (f"; {fix}" if fix else ""))
        self.fix = fix


# two-byte cells (first, last) of the standards' frequent characters
GB2312_HANZI = (0xB0A1, 0xF7FE)   # level 1 (3,755 frequent, simplified) then level 2 (3,008)
GB2312_LEVEL1 = (0xB0A1, 0xD7FE)
BIG5_LEVEL1 = (0xA440, 0xC67E)    # 5,401 frequent traditional characters; level 2 at C940


def _cells(codec: str, first: int, last: int) -> set[str]:
    """The characters of ``codec``'s two-byte cells from ``first`` to ``last``."""
    chars = set()
    for code in range(first, last + 1):
        try:
            chars.add(code.to_bytes(2, "big").decode(codec))
        except UnicodeDecodeError:  # outside the codec's trail bytes, or an unassigned cell
            pass
    return chars


@functools.cache
def common_hanzi() -> frozenset[str]:
    """All 6,763 GB2312 hanzi (simplified, both levels) and Big5's 5,401 frequently
    used characters (traditional, level 1): 8,836 characters in all."""
    return frozenset(_cells("gb2312", *GB2312_HANZI) | _cells("big5", *BIG5_LEVEL1))


@functools.cache
def everyday_hanzi() -> frozenset[str]:
    """The 2,434 characters both standards' first levels hold: frequent in simplified
    and traditional text alike (你, 好, 的, 是, ...). Wrong-codec text hits them less
    often than it hits the rest of common_hanzi (你好 in GBK read as Big5 is 斕疑)."""
    return frozenset(_cells("gb2312", *GB2312_LEVEL1) & _cells("big5", *BIG5_LEVEL1))


# what the right codec's text is made of besides hanzi, and what a wrong codec makes
# of it: GBK's "，" (A3AC) read as Big5 is bopomofo ㄏ, Big5's "，" (A141) read as GBK a
# private-use character; halfwidth katakana and Hangul are further mojibake
PUNCTUATION = frozenset("，。、！？：；“”‘’（）《》「」『』…—·")
MOJIBAKE = re.compile("[\ue000-\uf8ff\u3100-\u312f\uff61-\uff9f\uac00-\ud7af]")


def _plausibility(codec: str, text: str) -> int:
    """How much ``text`` looks like Chinese: a point per common character or Chinese
    punctuation mark, two per everyday character, minus one per mojibake character.
    UTF-16 read from bytes without NUL (so without any ASCII character) must be CJK
    throughout: ASCII byte pairs read as UTF-16 are CJK characters too, many common."""
    if codec.startswith("utf-16") and _readable_share(text) < 0.9:
        return 0
    common, everyday = _common_or_punctuation(), everyday_hanzi()
    return sum((c in common) + (c in everyday) for c in text) - len(MOJIBAKE.findall(text))


@functools.cache
def _common_or_punctuation() -> frozenset[str]:  # built once, not per candidate decoding
    return common_hanzi() | PUNCTUATION


def _readable_share(text: str) -> float:
    """Share of characters that plain text is made of: ASCII, CJK, CJK punctuation."""
    ok = sum(c.isascii() and (c.isprintable() or c in ALLOWED_CONTROL)
             or "\u3000" <= c <= "\u9fff" or "\uff00" <= c <= "\uffef" for c in text)
    return ok / max(1, len(text))


def _utf16_without_bom(prefix: bytes) -> str:
    """NUL bytes: UTF-16 (LE or BE, whichever reads as text) or a binary file."""
    best, share = None, 0.0
    for encoding in ("utf-16-le", "utf-16-be"):
        try:
            text = prefix[: len(prefix) // 2 * 2].decode(encoding)
        except UnicodeDecodeError:  # e.g. a lone surrogate, or cut inside a pair
            text = prefix[: len(prefix) // 2 * 2 - 2].decode(encoding, errors="replace")
        if _readable_share(text) > share:
            best, share = encoding, _readable_share(text)
    if share < 0.9:
        raise NotText("is a binary file, not text (it contains NUL bytes)")
    return best


def guess_encoding(prefix: bytes) -> str:
    """The codec to record for a file whose first bytes are ``prefix`` (a prefix: its
    last character may be cut). Raises NotText when no supported encoding fits."""
    if prefix.startswith(codecs.BOM_UTF8):
        return "utf-8"
    if prefix.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\0" in prefix:
        return _utf16_without_bom(prefix)
    if _is_utf8(prefix):
        return "utf-8"  # UTF-8, perhaps with a damaged byte: decoding will say where
    head = _clean_head(prefix)
    scores = {codec: _plausibility(codec, text) for codec, text in strict_decodings(head).items()
              # UTF-16 without a NUL byte is text without one ASCII character, not even a
              # newline: never a head cut short (a Word quote in UTF-8 read as UTF-16 garbage)
              if not (codec.startswith("utf-16") and len(head) < len(prefix))}
    if head.isascii() or not scores:  # ASCII then a bad byte: no evidence of any of them
        raise NotText("is not text in a supported encoding (UTF-8, GB18030/GBK, Big5, UTF-16; "
                      "a binary file?)", fix="re-encode it as UTF-8")
    best = max(scores, key=scores.get)  # max keeps the first of equals: CANDIDATES' order
    close = [codec for codec in scores if scores[codec] >= DETECTOR_SLACK * scores[best]]
    if len(close) > 1 and len(head) >= DETECTOR_MIN and (detected := _detector_pick(head)) in close:
        return detected  # a near tie, e.g. text in the bytes GB2312 and Big5 share
    return best


def _is_utf8(prefix: bytes) -> bool:
    """UTF-8, valid or with some damage: at most UTF8_DAMAGE undecodable sequences per
    multibyte character decoded (a character cut by the end of the prefix is no damage), or
    a few stray bytes (at most one per 100, none under 100 bytes) where at least as many
    multibyte characters decode: a Word quote in cp1252 inside UTF-8 text. GBK read as UTF-8
    decodes far fewer characters than it breaks (谢谢老板！ 1 bad per 4; a mostly-ASCII GBK
    table most of its bytes), and a few bad bytes among ASCII are no evidence of UTF-8."""
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(prefix)
    bad = text.count("\ufffd")
    multibyte = sum(not c.isascii() for c in text) - bad
    return (not bad or (multibyte > 0 and bad / multibyte <= UTF8_DAMAGE)
            or (bad <= len(prefix) // 100 and multibyte >= bad))


def strict_decodings(head: bytes) -> dict[str, str]:
    """{codec: text} for each candidate that decodes every byte of ``head`` (a character
    cut by the end of the prefix is allowed: that is where the prefix was cut)."""
    out = {}
    for codec in CANDIDATES:
        try:
            out[codec] = _decoder(codec).decode(head, final=False)
        except UnicodeDecodeError:
            continue
    return out


def _decoder(codec: str) -> codecs.IncrementalDecoder:
    return codecs.getincrementaldecoder(DECODE_AS.get(codec, codec))("strict")


def _detector_pick(head: bytes) -> str | None:
    """charset-normalizer's answer among the Chinese codecs, or None when it has none.
    It is given whole characters only: a prefix cut inside one makes it answer None."""
    cut = _LAST_BOUNDARY.search(head)
    whole = head[:cut.start() + 1] if cut else head
    # only the encodings Chinese text comes in: a single-byte guess (e.g. iso8859-5)
    # would decode anything, silently, into mojibake
    best = charset_normalizer.from_bytes(whole, cp_isolation=CHINESE).best()
    if best is None:
        return None
    name = codecs.lookup(best.encoding).name
    return CANONICAL.get(name, name)


def _clean_head(prefix: bytes) -> bytes:
    """The prefix up to the first byte that none of UTF-8, GB18030 and Big5 can decode:
    one bad byte must not hide the encoding (decoding the whole file then reports its
    offset). UTF-16 is left out: it decodes nearly any even number of bytes."""
    end = 0
    for codec in BYTE_CANDIDATES:
        try:
            _decoder(codec).decode(prefix)  # a cut last character is fine
            return prefix
        except UnicodeDecodeError as exc:
            end = max(end, exc.start)
    return prefix[:end]
