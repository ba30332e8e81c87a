"""Which encoding a Chinese text file is in, from a prefix of its bytes.

Chinese text comes as UTF-8, GB18030/GBK, Big5 or UTF-16. A BOM or NUL bytes
settle UTF-8/UTF-16; otherwise two opinions are combined, so that detection
does not rest on one heuristic: charset-normalizer's, and a count of *common*
Chinese characters in each strict decoding of the prefix. The count is the
judge: GBK bytes read as Big5 (or the reverse) still decode, but into rare
characters, symbols and private-use code points, while the right codec gives
text made of the characters that fill everyday and classical writing alike.
"""

from __future__ import annotations

import codecs
import functools
import re

import charset_normalizer

# charset-normalizer's answer -> the codec we record; GBK/GB2312 text decodes as its
# superset GB18030, Big5 as Big5-HKSCS (a superset that also covers the cp950 extras)
CANONICAL = {"gbk": "gb18030", "gb2312": "gb18030", "hz": "gb18030", "big5": "big5",
             "cp950": "big5", "big5hkscs": "big5", "utf-8": "utf-8", "ascii": "utf-8"}
DECODE_AS = {"utf-8": "utf-8-sig", "big5": "big5hkscs"}  # utf-8-sig drops a BOM
CHINESE = ["gb18030", "big5", "big5hkscs", "cp950"]
ALLOWED_CONTROL = frozenset("\t\n\r\f\v")
# the strict decodings tried, in order of preference when they tie (a tie goes to GB18030
# over Big5: a GB2312 text without any byte outside Big5's ranges decodes as both)
CANDIDATES = ("utf-8", "gb18030", "big5", "utf-16-le", "utf-16-be")
DETECTOR_SLACK = 0.9  # the detector's pick stands if it has >= 90% of the best count
# a byte below "0" is never inside a multibyte character of UTF-8, GB18030 (whose
# 4-byte form uses 0x30-0x39) or Big5: cutting after one never splits a character
_LAST_BOUNDARY = re.compile(rb"[\x00-\x2f][^\x00-\x2f]*\Z")


class NotText(Exception):
    """A file we cannot read as text; the message completes "<path> ...", and ends in
    ``fix`` where the reason has its own (a reader adds its generic fix only without one)."""

    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message + (f"; {fix}" if fix else ""))
        self.fix = fix


@functools.cache
def common_hanzi() -> frozenset[str]:
    """All 6,763 GB2312 hanzi (simplified, both levels) and Big5's 5,401 frequently
    used characters (traditional, level 1): 8,836 characters in all."""
    chars = set()
    rows = [("gb2312", lead, range(0xA1, 0xFF)) for lead in range(0xB0, 0xF8)]
    rows += [("big5", lead, [*range(0x40, 0x7F), *range(0xA1, 0xFF)]) for lead in range(0xA4, 0xC7)]
    for codec, lead, trails in rows:
        for trail in trails:
            if codec == "big5" and (lead, trail) > (0xC6, 0x7E):  # level 2 starts at C940
                break
            try:
                chars.add(bytes((lead, trail)).decode(codec))
            except UnicodeDecodeError:  # the few unassigned cells at the end of a row
                pass
    return frozenset(chars)


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
    bad = prefix.decode("utf-8", errors="replace").count("\ufffd")
    if bad <= max(1, len(prefix) // 100):
        return "utf-8"  # UTF-8, perhaps with a damaged byte: decoding will say where
    head = _clean_head(prefix)
    counts = {codec: _common_count(text) for codec, text in strict_decodings(head).items()}
    if head.isascii() or not counts:  # ASCII then a bad byte: no evidence of any of them
        raise NotText("is not text in a supported encoding (UTF-8, GB18030/GBK, Big5, UTF-16; "
                      "a binary file?)", fix="re-encode it as UTF-8")
    best = max(counts, key=counts.get)  # max keeps the first of equals: CANDIDATES' order
    detected = _detector_pick(head)
    if detected in counts and counts[detected] >= DETECTOR_SLACK * counts[best]:
        return detected
    return best


def strict_decodings(head: bytes) -> dict[str, str]:
    """{codec: text} for each candidate that decodes every byte of ``head`` (a character
    cut by the end of the prefix is allowed: that is where the prefix was cut)."""
    out = {}
    for codec in CANDIDATES:
        decoder = codecs.getincrementaldecoder(DECODE_AS.get(codec, codec))("strict")
        try:
            out[codec] = decoder.decode(head, final=False)
        except UnicodeDecodeError:
            continue
    return out


def _common_count(text: str) -> int:
    common = common_hanzi()
    return sum(c in common for c in text)


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
    """The prefix up to the first byte neither GB18030 nor Big5 can decode: one bad
    byte must not hide the encoding (decoding the whole file then reports its offset)."""
    end = 0
    for codec in ("gb18030", "big5hkscs"):
        try:
            codecs.getincrementaldecoder(codec)().decode(prefix)  # a cut last character is fine
            return prefix
        except UnicodeDecodeError as exc:
            end = max(end, exc.start)
    return prefix[:end]
