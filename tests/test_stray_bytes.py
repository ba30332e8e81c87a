"""A few undecodable bytes in an otherwise good corpus file (a Word quote in cp1252, a
damaged sector): an error offering --skip-bad, which then drops only the lines or rows
that hold them. Many such bytes mean the file is in another encoding: bad as a whole."""

from __future__ import annotations

import json

import pytest

from zhbert.corpus import decoding
from zhbert.corpus.decoding import read_small_text
from zhbert.corpus.sources import iter_documents, resolve_sources
from zhbert.errors import UserError

LINE = "今天天气很好，我们去公园散步。{}\n"
TRADITIONAL = "今天天氣很好，我們去公園散步。{}\n"
QUOTED = "他说".encode() + b"\x93hello\x94" + "。\n".encode()  # cp1252 quotes in UTF-8


def _lines(n: int, codec: str = "utf-8", line: str = LINE) -> list[bytes]:
    return [line.format(i).encode(codec) for i in range(n)]


def _read(path, **kwargs):
    [info] = resolve_sources([str(path)], skip_bad=True, **kwargs)
    return info, list(iter_documents(info, per_line=True, skip_bad=True, **kwargs))


def test_error_counts_the_bytes_and_offers_skip_bad(tmp_path):
    path = tmp_path / "a.txt"
    lines = _lines(300)
    lines[10] = QUOTED
    path.write_bytes(b"".join(lines))
    offset = len(b"".join(lines[:10])) + len("他说".encode())
    with pytest.raises(UserError, match=rf"a.txt is not valid utf-8 text: undecodable byte at "
                                        rf"offset {offset} \(2 such bytes in [\d,]+ characters\); "
                                        r"fix them, or pass --skip-bad to skip only the lines"):
        resolve_sources([str(path)])


@pytest.mark.parametrize("codec, line", [("utf-8", LINE), ("gb18030", LINE), ("big5", TRADITIONAL)],
                         ids=["utf-8", "gb18030", "big5"])
def test_skip_bad_drops_only_the_lines_that_hold_them(tmp_path, codec, line):
    path = tmp_path / "a.txt"
    lines = _lines(300, codec, line)
    lines[10] = lines[250] = b"\xff\xfe" + lines[10]
    path.write_bytes(b"".join(lines))
    info, docs = _read(path)
    assert not info.skipped and info.encoding == codec
    assert [d.text for d in docs] == [line.format(i).strip() for i in range(300) if i not in (10, 250)]
    assert info.warnings == [f"skipped bad text line in {path} line {n}: it holds bytes that are not "
                             f"valid {codec}" for n in (11, 251)]


def test_skip_bad_jsonl_line_and_csv_row(tmp_path):
    rows = [json.dumps({"text": LINE.format(i).strip()}, ensure_ascii=False).encode() + b"\n" for i in range(200)]
    rows[5] = '{"text": "他说'.encode() + b"\x93hi\x94" + b'"}\n'
    (tmp_path / "b.jsonl").write_bytes(b"".join(rows))
    info, docs = _read(tmp_path / "b.jsonl")
    assert len(docs) == 199 and "b.jsonl line 6: it holds bytes that are not valid utf-8" in info.warnings[0]
    table = [b"id,text\n"] + [f"{i},{LINE.format(i).strip()}\n".encode() for i in range(200)]
    table[8] = b'7,"a quoted\n\x93text\x94 over two lines"\n'  # a multi-line row: dropped whole
    (tmp_path / "c.csv").write_bytes(b"".join(table))
    info, docs = _read(tmp_path / "c.csv")
    assert [d.text for d in docs] == [LINE.format(i).strip() for i in range(200) if i != 7]
    assert "c.csv line 10: its text holds undecodable bytes" in info.warnings[0]


def test_a_file_in_another_encoding_stays_bad_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(decoding, "SNIFF", 256)  # an ASCII head: guessed UTF-8, then GBK
    path = tmp_path / "a.txt"
    path.write_bytes(b"id 1 2 3\n" * 40 + b"".join(_lines(300, "gbk")))
    [info] = resolve_sources([str(path)], skip_bad=True)
    assert info.skipped and "is not valid utf-8 text" in info.warnings[0]
    assert "such bytes" not in info.warnings[0]


def test_utf16_has_no_line_skip(tmp_path):
    path = tmp_path / "a.txt"
    good = b"".join(_lines(100, "utf-16-le"))
    path.write_bytes(good + b"\x00\xdc" + good)
    [info] = resolve_sources([str(path)], skip_bad=True)
    assert info.skipped


def test_small_text_readers_do_not_offer_skip_bad(tmp_path):
    path = tmp_path / "sentences.txt"
    path.write_bytes(b"".join(_lines(50)) + QUOTED)
    with pytest.raises(UserError, match="sentences file .* offset") as err:
        read_small_text(path, "sentences file")
    assert "--skip-bad" not in str(err.value)
