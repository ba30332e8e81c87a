"""Encoding guesses the detector got wrong: GBK with little Chinese in it (short lines,
mostly-ASCII tables) taken for UTF-8 or Big5, and Windows Big5 (cp950) taken for GB18030."""

from __future__ import annotations

import pytest

from zhbert.corpus.encoding import NotText, guess_encoding
from zhbert.corpus.decoding import read_small_text
from zhbert.corpus.sources import iter_documents, resolve_sources
from zhbert.errors import UserError


def _text(path) -> str:
    [info] = resolve_sources([str(path)])
    return "\n\n".join(d.text for d in iter_documents(info))


@pytest.mark.parametrize("line", ["你好", "谢谢你", "哈哈哈哈", "注意安全", "谢谢老板！\n"])
def test_short_gbk_lines(tmp_path, line):
    """Each was read as UTF-8 (a few bad bytes passed as damage) or as Big5 (你好 as 斕疑)."""
    data = line.encode("gbk")
    assert guess_encoding(data) == "gb18030"
    path = tmp_path / "line.txt"
    path.write_bytes(data)
    assert read_small_text(path, "--input file") == line


def test_mostly_ascii_gbk_csv(tmp_path):
    """A table of ASCII metadata with a few GBK titles: 120 non-ASCII bytes in 28 KB."""
    rows = [f"{i},https://example.com/item/{i:06d},2024-01-{i % 28 + 1:02d},ok,{'x' * 40}"
            for i in range(400)]
    titles = ["北京新闻", "上海天气", "广州美食", "深圳科技", "杭州旅游", "成都火锅",
              "南京历史", "武汉大学", "西安古城", "重庆山城", "天津港口", "苏州园林",
              "青岛啤酒", "厦门海边", "昆明春天"]
    for n, title in enumerate(titles):
        rows[2 + n * 26] = f"{n},{title},2024-02-01,ok,{'y' * 40}"
    data = ("id,text,date,state,note\n" + "\n".join(rows) + "\n").encode("gbk")
    assert sum(b >= 0x80 for b in data) == 120
    path = tmp_path / "mostly_ascii_gbk.csv"
    path.write_bytes(data)
    [info] = resolve_sources([str(path)])
    assert info.encoding == "gb18030"
    texts = [d.text for d in iter_documents(info)]
    assert all(title in texts for title in titles)


def test_cp950_euro_and_fullwidth_tilde(tmp_path):
    """€ (A3E1) is cp950's and not Big5-HKSCS's: Big5 was no candidate, GB18030 won."""
    text = "這件衣服的價格是€120～150，運費另計。\n\n" + "請問何時可以出貨？謝謝您的幫忙。\n\n" * 30
    path = tmp_path / "win.txt"
    path.write_bytes(text.encode("cp950"))
    assert guess_encoding(path.read_bytes()) == "cp950"
    assert _text(path) == text.strip()


@pytest.mark.parametrize("codec, text, recorded", [
    ("utf-8", "北京是中国的首都。谢谢老板！\n", "utf-8"),
    ("utf-8", "Plain English only.\n", "utf-8"),
    ("big5", "話說天下大勢，分久必合，合久必分。\n", "big5"),
    ("gb18030", "笑死我了😂，你好。\n", "gb18030"),
])
def test_real_samples_still_right(tmp_path, codec, text, recorded):
    path = tmp_path / "a.txt"
    path.write_bytes(text.encode(codec))
    [info] = resolve_sources([str(path)])
    assert info.encoding == recorded and _text(path) == text.strip()


@pytest.mark.parametrize("data", [
    "café [MASK]\n".encode("latin-1"),  # one Latin-1 byte among ASCII was "UTF-8 with damage"
    b"plain ascii words \x80\x81\x82 " * 30,
])
def test_undecodable_is_refused_naming_the_file(tmp_path, data):
    with pytest.raises(NotText, match="not text in a supported encoding"):
        guess_encoding(data)
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(UserError, match=r"bad\.txt is not text in a supported encoding"):
        resolve_sources([str(path)])


ZH_LINE = "北京和上海的天气很好，我们一起去公园散步。"


@pytest.mark.parametrize("data", [
    # a Word quote pair in cp1252 opening a mostly-ASCII UTF-8 file (read as UTF-16 garbage)
    b"\x93Note\x94 2024 report: " + (ZH_LINE + "\nLine: the weather in Beijing is fine today.\n").encode() * 3,
    # English UTF-8 with cp1252 quotes and a few accented letters
    b"\x93Smart quotes\x94 came from Word. " + "The café served crème brûlée. ".encode() * 40,
    # Chinese UTF-8 with a cp1252 quote pair on every line (read as GB18030 garbage)
    b"".join(ZH_LINE.encode()[:30] + b"\x93" + ZH_LINE.encode()[30:] + b"\x94\n" for _ in range(50)),
], ids=["quotes-then-mostly-ascii", "english-accents", "quote-pair-every-line"])
def test_utf8_with_stray_windows_bytes_stays_utf8(data):
    """A review's files: stray cp1252 bytes in UTF-8 text were guessed UTF-16-LE or GB18030,
    and prepare trained on mojibake (or said nothing was left)."""
    assert guess_encoding(data) == "utf-8"
