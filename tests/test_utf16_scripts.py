"""UTF-16 without a BOM is told by its NUL bytes (the high bytes of its ASCII: spaces,
newlines, digits) and then by what it reads as. That reading knew ASCII and CJK only, so
Korean (Hangul) or Russian saved as UTF-16 LE or BE without a BOM was "a binary file, not
text". Text in any one script is read; binary data, which scatters over many scripts or
repeats one code unit, is still refused."""

from __future__ import annotations

import random

import pytest

from zhbert.corpus.sources import iter_documents, resolve_sources
from zhbert.errors import UserError

TEXTS = {
    "ko": "대한민국의 수도는 서울입니다. 서울은 한강을 끼고 있는 큰 도시이며, 많은 사람들이 살고 있습니다.\n"
          "오늘은 날씨가 아주 좋아서 공원에 산책을 갔습니다.\n\n",
    "zh": "今天天气很好，我们去公园散步。北京是中国的首都，有很多名胜古迹。\n我们一起去吃饭吧。\n\n",
    "ja": "今日はとても良い天気なので、公園へ散歩に行きました。東京は日本の首都です。\n"
          "みんなで昼ご飯を食べましょう。\n\n",
    "ru": "Москва является столицей России. Сегодня хорошая погода, и мы пошли гулять в парк.\n\n",
}


def _read(path, **kwargs):
    [info] = resolve_sources([str(path)], **kwargs)
    return info, list(iter_documents(info, **kwargs))


@pytest.mark.parametrize("codec, recorded", [("utf-16", "utf-16"), ("utf-16-le", "utf-16-le"),
                                             ("utf-16-be", "utf-16-be")])
@pytest.mark.parametrize("language", sorted(TEXTS))
@pytest.mark.parametrize("copies", [1, 40])
def test_utf16_in_any_one_script_is_read(tmp_path, language, codec, recorded, copies):
    """"utf-16" writes a BOM (LE here); "utf-16-le" and "utf-16-be" write none."""
    path = tmp_path / "a.txt"
    text = TEXTS[language] * copies
    path.write_bytes(text.encode(codec))
    info, docs = _read(path)
    assert info.encoding == recorded
    assert "\n\n".join(d.text for d in docs) == text.strip()


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_are_still_binary(tmp_path, seed):
    path = tmp_path / "x.txt"
    path.write_bytes(random.Random(seed).randbytes(1 << 16))
    with pytest.raises(UserError, match=r"x\.txt is a binary file, not text \(it contains NUL bytes\)"):
        resolve_sources([str(path)])


@pytest.mark.parametrize("content", [
    b"\xcc" * 4000 + b"\x00" * 64,                    # MSVC's fill: U+CCCC is a Hangul syllable
    b"\xcd\xcd\x00\x00" * 1000,                       # its heap fill, beside NULs
    bytes(range(256)) * 8,                            # every byte value: every script a little
    "대한민국".encode("utf-16-le") + bytes(range(256)) * 8,
])
def test_binary_data_that_reads_as_letters_is_still_binary(tmp_path, content):
    path = tmp_path / "x.bin.txt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=r"is a binary file, not text"):
        resolve_sources([str(path)])


@pytest.mark.parametrize("text", [
    "温度25℃，面积100㎡，价格￥30，重量5㎏。今天天气很好。\n",      # read before the script rule: kept
    "대한민국(大韓民國)의 수도(首都)는 서울입니다. 한강(漢江)이 흐릅니다.\n",  # Korean with hanja
    "北京 Пекин 是中国的首都，Москва 是俄罗斯的首都。\n",             # two scripts
    "Běijīng shì Zhōngguó de shǒudū. 北京是中国的首都。\n",           # pinyin with tone marks
    "┌──┬──┐\n│甲│乙│\n└──┴──┘ ① ② ③\n",                          # box drawing, circled digits
])
def test_utf16_with_symbols_and_two_scripts_is_read(tmp_path, text):
    """The one-script rule counted each symbol as a script of its own (℃ "DEGREE", ㎡
    "SQUARE"): Chinese UTF-16 read before was called "a binary file", and so were Korean
    with hanja and Chinese beside Russian. Symbols and numbers now count with punctuation,
    and the letters of two scripts."""
    path = tmp_path / "a.txt"
    path.write_bytes((text * 20).encode("utf-16-le"))
    info, docs = _read(path)
    assert info.encoding == "utf-16-le" and docs
