"""Encoding detection on generated texts of several registers, every encoding Chinese
text comes in, prefixes cut inside a character, one bad byte, and a detector that is
unsure or wrong."""

from __future__ import annotations

import codecs
import random

import pytest

from zhbert.corpus import decoding, encoding
from zhbert.corpus.encoding import NotText, guess_encoding, strict_decodings
from zhbert.corpus.sources import iter_documents, resolve_sources
from zhbert.errors import UserError

# (simplified, traditional) sentence pools; a register's text is a seeded shuffle of them
REGISTERS = {
    "classical": [  # Ming novels (Three Kingdoms, Journey to the West), the Analects
        ("话说天下大势，分久必合，合久必分。", "話說天下大勢，分久必合，合久必分。"),
        ("周末七国分争，并入于秦。", "周末七國分爭，并入於秦。"),
        ("推其致乱之由，殆始于桓、灵二帝。", "推其致亂之由，殆始於桓、靈二帝。"),
        ("桓帝禁锢善类，崇信宦官。", "桓帝禁錮善類，崇信宦官。"),
        ("时有宦官曹节等弄权，窦武、陈蕃谋诛之，机事不密，反为所害，中涓自此愈横。",
         "時有宦官曹節等弄權，竇武、陳蕃謀誅之，機事不密，反為所害，中涓自此愈橫。"),
        ("只见一条大青蛇，从梁上飞将下来，蟠于椅上。", "只見一條大青蛇，從梁上飛將下來，蟠於椅上。"),
        ("盖闻天地之数，有十二万九千六百岁为一元。", "蓋聞天地之數，有十二萬九千六百歲為一元。"),
        ("乃子、丑、寅、卯、辰、巳、午、未、申、酉、戌、亥之十二支也。",
         "乃子、丑、寅、卯、辰、巳、午、未、申、酉、戌、亥之十二支也。"),
        ("学而时习之，不亦说乎？有朋自远方来，不亦乐乎？", "學而時習之，不亦說乎？有朋自遠方來，不亦樂乎？"),
    ],
    "news": [
        ("新华社北京3月5日电 国务院总理今天在人民大会堂作政府工作报告。",
         "新華社北京3月5日電 國務院總理今天在人民大會堂作政府工作報告。"),
        ("据统计，2023年全国居民人均可支配收入39218元，比上年名义增长6.3%。",
         "據統計，2023年全國居民人均可支配收入39218元，比上年名義增長6.3%。"),
        ("本报记者从市教育局获悉，全市中小学将于9月1日正式开学。",
         "本報記者從市教育局獲悉，全市中小學將於9月1日正式開學。"),
        ("专家表示，经济运行总体平稳，就业形势保持稳定。", "專家表示，經濟運行總體平穩，就業形勢保持穩定。"),
    ],
    "web": [
        ("楼主说得太对了！！！哈哈哈 http://bbs.example.com/thread-123.html",
         "樓主說得太對了！！！哈哈哈 http://bbs.example.com/thread-123.html"),
        ("求助：电脑开机蓝屏怎么办？在线等，挺急的~", "求助：電腦開機藍屏怎麼辦？在線等，挺急的~"),
        ("转发微博 @小明: 今天天气不错，出去玩了一整天 :)", "轉發微博 @小明: 今天天氣不錯，出去玩了一整天 :)"),
        ("顶一下，这个帖子必须火！#好物推荐#", "頂一下，這個帖子必須火！#好物推薦#"),
    ],
    "poetry": [
        ("床前明月光，疑是地上霜。\n举头望明月，低头思故乡。", "床前明月光，疑是地上霜。\n舉頭望明月，低頭思故鄉。"),
        ("白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。", "白日依山盡，黃河入海流。\n欲窮千里目，更上一層樓。"),
        ("国破山河在，城春草木深。\n感时花溅泪，恨别鸟惊心。", "國破山河在，城春草木深。\n感時花濺淚，恨別鳥驚心。"),
        ("春眠不觉晓，处处闻啼鸟。\n夜来风雨声，花落知多少。", "春眠不覺曉，處處聞啼鳥。\n夜來風雨聲，花落知多少。"),
    ],
}
BEYOND_GBK = "笑死我了😂𠀀"  # only GB18030 (and Unicode) encodes these


def generated(register: str, script: int, size: int = 100_000, extra: str = "") -> str:
    """About ``size`` characters: paragraphs of shuffled sentences, blank-line separated."""
    rng, parts, n = random.Random(f"{register}{script}"), [], 0
    pool = [pair[script] for pair in REGISTERS[register]] + ([extra] if extra else [])
    while n < size:
        paragraph = "".join(rng.choice(pool) for _ in range(rng.randint(1, 6)))
        parts.append(paragraph)
        n += len(paragraph) + 2
    return "\n\n".join(parts) + "\n"


# (codec to write, script 0=simplified 1=traditional, extra sentence, codec recorded)
CASES = [
    ("gbk", 0, "", "gb18030"),
    ("gbk", 1, "", "gb18030"),          # traditional characters saved as GBK (common for old novels)
    ("gb18030", 0, BEYOND_GBK, "gb18030"),
    ("big5", 1, "", "big5"),
    ("utf-16-le", 0, "", "utf-16-le"),
    ("utf-16-be", 1, "", "utf-16-be"),
    ("utf-16", 0, BEYOND_GBK, "utf-16"),  # with BOM
]


@pytest.mark.parametrize("register", REGISTERS)
@pytest.mark.parametrize("codec, script, extra, recorded", CASES)
def test_registers_and_encodings(tmp_path, register, codec, script, extra, recorded):
    text = generated(register, script, extra=extra)
    data = text.encode(codec)
    # every place the 64 KB sniffed prefix can end: on a boundary or inside a character
    for cut in range(decoding.SNIFF - 3, decoding.SNIFF + 1):
        assert guess_encoding(data[:cut]) == recorded, cut
    path = tmp_path / "a.txt"
    for lead in (b"", b"x"):  # one ASCII byte shifts where the prefix cut falls
        path.write_bytes(lead + data if codec.startswith("g") or codec == "big5" else data)
        [info] = resolve_sources([str(path)])
        assert info.encoding == recorded
        docs = list(iter_documents(info))
        assert "\n\n".join(d.text for d in docs).endswith(text.strip()[-200:])


def test_ming_novel_gbk_prefix_cut_inside_a_character(tmp_path):
    """The issue's file: GBK classical prose whose 64 KB prefix ends inside a character
    (charset-normalizer then returns no match at all); it decodes strictly as GB18030."""
    data = generated("classical", 1, size=110_000).encode("gbk")
    data = data if _cut_inside(data[:decoding.SNIFF]) else b"\n" + data
    assert _cut_inside(data[:decoding.SNIFF])
    path = tmp_path / "novel.txt"
    path.write_bytes(data)
    assert resolve_sources([str(path)])[0].encoding == "gb18030"


def _cut_inside(prefix: bytes) -> bool:
    decoder = codecs.getincrementaldecoder("gb18030")()
    decoder.decode(prefix)
    return bool(decoder.getstate()[0])  # bytes held back: the start of a cut character


@pytest.mark.parametrize("codec, script", [("gbk", 0), ("gbk", 1), ("big5", 1)])
def test_detector_unsure(monkeypatch, codec, script):
    """With charset-normalizer answering nothing, the strict decodings decide alone."""
    monkeypatch.setattr(encoding, "_detector_pick", lambda head: None)
    data = generated("classical", script, size=40_000).encode(codec)
    assert guess_encoding(data) == ("big5" if codec == "big5" else "gb18030")


def test_wrong_detector_is_overruled(monkeypatch):
    """Simplified GB2312 text whose bytes all fall in Big5's ranges decodes as both;
    read as Big5 it is rare characters, so a detector saying Big5 is overruled."""
    text = "".join(c for c in generated("news", 0, size=20_000) if _in_big5_ranges(c))
    data = text.encode("gbk")
    assert {"gb18030", "big5"} <= set(strict_decodings(data))
    monkeypatch.setattr(encoding, "_detector_pick", lambda head: "big5")
    assert guess_encoding(data) == "gb18030"
    monkeypatch.setattr(encoding, "_detector_pick", lambda head: "gb18030")
    big5 = generated("classical", 1, size=20_000).encode("big5")
    assert guess_encoding(big5) == "big5"  # GB18030 decodes it too, into rare characters


def _in_big5_ranges(char: str) -> bool:
    data = char.encode("gbk")
    try:
        data.decode("big5hkscs")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize("codec, script, recorded", [
    ("gbk", 0, "gb18030"), ("gbk", 1, "gb18030"), ("big5", 1, "big5"), ("utf-16-le", 0, "utf-16-le"),
])
@pytest.mark.parametrize("register", ["classical", "web"])
def test_one_bad_byte(tmp_path, codec, script, recorded, register):
    """One bad byte inside the sniffed prefix: the encoding is still found, and the
    error names it and the byte's offset."""
    data = generated(register, script, size=30_000).encode(codec)
    at = 2000 if codec.startswith("utf-16") else next(
        i for i in range(2000, 3000) if data[i] < 0x40)  # never a trail byte: between characters
    bad = b"\x00\xdc" if codec.startswith("utf-16") else b"\xff"  # a lone surrogate / never a lead byte
    path = tmp_path / "a.txt"
    path.write_bytes(data[:at] + bad + data[at:])
    with pytest.raises(UserError, match=f"not valid {recorded} text: undecodable byte at offset {at}"):
        resolve_sources([str(path)])


def test_not_chinese_is_refused():
    with pytest.raises(NotText, match="not text in a supported encoding"):
        guess_encoding("Café au lait, très bien. ".encode("cp1252") * 5)
    assert len(encoding.common_hanzi()) == 8836  # GB2312 6,763 + Big5 level 1 5,401 - shared 3,328
