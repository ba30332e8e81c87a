"""Japanese and Korean text in their own legacy encodings (Shift-JIS, EUC-JP, EUC-KR,
ISO-2022) is none of ours: it decoded cleanly as UTF-16 garbage, Big5 or GB18030 and was
trained on silently (exit 0). It is refused, naming the encoding it looks like; Chinese
with the symbols and stray kana real files have is still read."""

from __future__ import annotations

import pytest

from cli_helpers import refused
from zhbert.corpus import encoding
from zhbert.corpus.encoding import NotText, guess_encoding
from zhbert.corpus.sources import iter_documents, resolve_sources
from zhbert.errors import UserError

JA = ["東京は日本の首都であり、政治と経済の中心地である。多くの人々が毎日電車で通勤している。",
      "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。",
      "このソフトウェアは、テキストファイルを読み込んで単語の出現頻度を数えます。",
      "国境の長いトンネルを抜けると雪国であった。夜の底が白くなった。"]
KO = ["서울은 한국의 수도이며 정치와 경제의 중심지입니다. 많은 사람들이 매일 지하철로 출퇴근합니다.",
      "나는 어제 친구와 함께 영화를 보러 갔다. 영화가 끝난 뒤에 우리는 김치찌개를 먹었다.",
      "이 프로그램은 텍스트 파일을 읽어서 단어의 빈도를 계산합니다.",
      "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다."]


def _paragraphs(lines: list[str], n: int = 40) -> str:
    return "".join(f"{lines[i % len(lines)]}{i}\n\n" for i in range(n))


@pytest.mark.parametrize("lines, codec, named", [
    (JA, "shift_jis", "SHIFT_JIS"),  # was utf-16-be: blank lines became U+0A0A, one document
    (JA, "cp932", "SHIFT_JIS"),
    (JA, "euc_jp", "EUC-JP"),        # was big5 or gb18030
    (KO, "euc_kr", "EUC-KR"),        # was gb18030: Hangul cells are GB2312's level-1 hanzi
    (KO, "cp949", "EUC-KR"),
    (JA, "iso2022_jp", "ISO-2022-JP"),  # was "a binary file" (ESC bytes)
    (KO, "iso2022_kr", "ISO-2022-KR"),
])
def test_foreign_encoding_is_refused_naming_it(tmp_path, lines, codec, named):
    data = _paragraphs(lines).encode(codec)
    with pytest.raises(NotText, match=f"not text in a supported encoding.*looks like {named}"):
        guess_encoding(data)
    path = tmp_path / "foreign.txt"
    path.write_bytes(data)
    with pytest.raises(UserError, match=rf"foreign\.txt is not text in a supported encoding .*"
                                        rf"iconv -f {named} -t UTF-8"):
        resolve_sources([str(path)])


@pytest.mark.parametrize("lines, codec", [(JA, "shift_jis"), (JA, "euc_jp"), (KO, "euc_kr")])
def test_one_line_is_refused(lines, codec):
    """A single line of 30-odd characters is evidence enough."""
    with pytest.raises(NotText, match="not text in a supported encoding"):
        guess_encoding((lines[0] + "\n").encode(codec))


def test_shift_jis_with_one_byte_more_is_not_a_bad_byte(tmp_path):
    """An odd length: UTF-16 fails at the end, and the user was sent after one bad byte
    ("is not valid utf-16-be text: undecodable byte at offset ...; pass --skip-bad")."""
    path = tmp_path / "sjis.txt"
    path.write_bytes(_paragraphs(JA).encode("shift_jis") + b"x")
    with pytest.raises(UserError, match="not text in a supported encoding.*SHIFT_JIS") as exc:
        resolve_sources([str(path)])
    assert "undecodable byte" not in str(exc.value)


def test_prepare_exits_2(tmp_path, capsys):
    path = tmp_path / "sjis.txt"
    path.write_bytes(_paragraphs(JA).encode("shift_jis"))
    err = refused(["prepare", str(path), "--language", "ja", "--out", str(tmp_path / "o"),
                   "--workers", "1", "--min-split-docs", "1"], capsys)
    assert "not text in a supported encoding" in err and "SHIFT_JIS" in err
    assert not (tmp_path / "o").exists()


ZH = "北京和上海的天气很好，我们一起去公园散步。学而时习之，不亦说乎？"


@pytest.mark.parametrize("text, codec", [
    # separators, numbered lists and fullwidth letters: symbols are no evidence either way
    ("━━━━━━━━━━━━━━━━━━━━\n①②③④⑤ ＣＰＵ ＧＰＵ ×÷±≤≥ ★☆●◆■\n" + ZH + "\n\n", "gbk"),
    ("┌────┬────┐\n│ 名称 │ 数量 │\n└────┴────┘\n" + ZH + "\n\n", "gbk"),
    (ZH + "「ラーメン」の店では、" + ZH + "\n\n", "gbk"),  # a little kana in Chinese text
    ("話說天下大勢，分久必合，合久必分。周末七國分爭，并入於秦。\n\n", "big5"),
])
def test_chinese_with_symbols_is_still_read(tmp_path, text, codec):
    path = tmp_path / "zh.txt"
    path.write_bytes((text * 30).encode(codec))
    [info] = resolve_sources([str(path)])
    assert info.encoding == ("big5" if codec == "big5" else "gb18030")
    assert text.split("\n")[-3][:10] in "".join(d.text for d in iter_documents(info))


def test_kana_are_text_in_utf16_only():
    """Japanese is supported in UTF-16 (whose NUL-free decodings are checked too), not in
    GB18030 or Big5: EUC-JP's kana cells are GB2312's, so there they are no evidence."""
    text = "".join(JA)
    assert encoding._reads_as_text("utf-16-le", text) is True
    assert encoding._reads_as_text("gb18030", text) is False


@pytest.mark.parametrize("data", [
    b"build \x1b(B\x1b[mok\x1b[32m passed\x1b(B\x1b[m\n" * 3,  # tput sgr0: ESC ( B is no designation
    "北京 \x1b[1m加粗\x1b[0m\n".encode() * 3,
])
def test_terminal_escapes_are_not_iso2022(data):
    assert guess_encoding(data) == "utf-8"


def test_short_text_is_no_evidence():
    """Under MIN_EVIDENCE CJK characters the check does not refuse: a 2-12 character
    Chinese cut went down to a 0.25 share of frequent characters."""
    assert guess_encoding("蝙蝠侠".encode("gbk")) == "gb18030"
    assert encoding._reads_as_text("gb18030", "蝙蝠侠") is None  # too short to tell
    assert encoding._reads_as_text("gb18030", "蝙蝠" * 20) is False


@pytest.mark.parametrize("text", [
    "狐假虎威\n守株待兔\n画蛇添足\n亡羊补牢\n刻舟求剑\n掩耳盗铃\n井底之蛙\n叶公好龙\n杯弓蛇影\n邯郸学步\n",
    "张伟\n王芳\n李娜\n刘洋\n陈静\n杨磊\n赵敏\n黄婷\n周杰\n吴昊\n徐丽\n孙涛\n胡斌\n朱琳\n高峰\n林枫\n",
    "氢氦锂铍硼碳氮氧氟氖钠镁铝硅磷硫氯氩钾钙钪钛钒铬锰铁钴镍铜锌镓锗砷硒溴氪铷锶钇锆铌钼\n",
])
def test_a_gbk_list_of_rare_hanzi_is_still_chinese(text):
    """Idioms, surnames and element names are few of the frequent hanzi (0.02-0.23): the
    frequency check alone refused them ("a binary file?", or "looks like EUC-KR"); a file is
    refused only where its bytes read as Japanese or Korean (a review found it)."""
    assert guess_encoding(text.encode("gbk")) == "gb18030"


@pytest.mark.parametrize("text, codec, name", [
    ("こんにちは世界\n", "euc_jp", "EUC-JP"), ("こんにちは世界\n", "shift_jis", "SHIFT_JIS"),
    ("안녕하세요\n", "euc_kr", "EUC-KR"),
    ("今日はとても良い天気ですね。私たちは公園へ散歩に行きました。", "euc_jp", "EUC-JP"),
])
def test_a_short_japanese_or_korean_file_is_refused_naming_its_encoding(text, codec, name):
    """Under 20 CJK characters nothing was judged: こんにちは世界 in EUC-JP was read as GBK
    (仇切卞反壑氏钗), exit 0; one line of EUC-JP was named EUC-KR, whose iconv made Hangul of
    it (a re-test)."""
    with pytest.raises(NotText, match=rf"it looks like {name}") as err:
        guess_encoding(text.encode(codec))
    assert f"iconv -f {name} " in err.value.fix


@pytest.mark.parametrize("text", ["我の女神今天好美", "这是我の店，欢迎光临", "のの中文字好"])
def test_short_chinese_with_a_kana_or_two_is_still_chinese(text):
    """の as Chinese web writing uses it is no evidence of Japanese (measured: 0 of 6,786
    built-in snippets of 2-19 characters, GBK and Big5, refused)."""
    assert guess_encoding(text.encode("gbk")) == "gb18030"
