"""A JSON Lines file cut short mid-write (a copy interrupted, a download stopped): its last
line ends without a newline inside its JSON, or inside a character. Kept as a cut-short .json
or .jsonl.gz is: every complete line, and a warning naming the file and where it stops. A
bad line elsewhere, or a last line that ends with a newline, stays a bad line."""

from __future__ import annotations

import json

import pytest

from zhbert.corpus import sources
from zhbert.corpus.decoding import Unterminated, lines_of, read_small_text
from zhbert.corpus.jsonl import LineCut, parse_jsonl_line
from zhbert.corpus.sources import iter_documents, resolve_sources
from zhbert.errors import UserError

TEXTS = [f"今天天气很好，我们去公园散步。第{i}天。" for i in range(4)]
LINES = [json.dumps({"text": t}, ensure_ascii=False) for t in TEXTS]

# the reader turns the last line's LineCut into a warning (sources._jsonl_documents); see
# the report of the change that added LineCut
needs_reader = pytest.mark.skipif("LineCut" not in vars(sources),
                                  reason="sources._jsonl_documents does not catch jsonl.LineCut yet")


def _read(path, **kwargs):
    [info] = resolve_sources([str(path)], **kwargs)
    return info, [d.text for d in iter_documents(info, **kwargs)]


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@needs_reader
@pytest.mark.parametrize("skip_bad", [False, True])
def test_a_last_line_cut_inside_its_json_keeps_the_lines_before(tmp_path, skip_bad):
    cut = LINES[3][:len(LINES[3]) // 2]  # inside the text's string
    path = _write(tmp_path / "a.jsonl", "\n".join(LINES[:3] + [cut]).encode("utf-8"))
    info, texts = _read(path, skip_bad=skip_bad)
    assert texts == TEXTS[:3]
    [warning] = info.warnings
    assert f"{path} looks cut short at line 4" in warning and "kept every complete line" in warning


@needs_reader
def test_a_last_line_cut_after_its_last_value_is_cut_too(tmp_path):
    path = _write(tmp_path / "a.jsonl", "\n".join(LINES[:2] + [LINES[2][:-1]]).encode("utf-8"))
    info, texts = _read(path)
    assert texts == TEXTS[:2] and "looks cut short at line 3" in info.warnings[0]


def test_a_last_line_cut_inside_a_character_keeps_the_lines_before(tmp_path):
    """A cut at a random byte of UTF-8 Chinese lands inside a character two times in three:
    the file had been a bad file ("not valid utf-8 text") before any line was read."""
    data = "\n".join(LINES).encode("utf-8")
    path = _write(tmp_path / "a.jsonl", data[:data.index("第3天".encode()) + 6])  # 2 bytes of 天
    info, texts = _read(path)
    assert texts == TEXTS[:3]
    [warning] = info.warnings
    assert str(path) in warning and "begin a character that never ends" in warning


def test_a_text_file_cut_inside_a_character_is_kept_as_a_cut_gz_is(tmp_path):
    path = _write(tmp_path / "a.txt", "第一段。\n\n第二段。".encode("utf-8")[:-1])
    info, texts = _read(path)
    assert texts == ["第一段。"] and "truncated or damaged" in info.warnings[0]
    with pytest.raises(UserError, match=r"a\.txt is cut short \(its last 2 bytes, at offset \d+, begin"):
        read_small_text(path, "input file")


@pytest.mark.parametrize("lines, bad", [
    (LINES[:1] + ['{"text": "坏'] + LINES[2:3], 2),             # a bad line that is not the last
    (LINES[:2] + ['{"text": "坏', ""], 3),                       # the last, ending with a newline
    (LINES[:2] + [LINES[2] + ' {"x"'], 3),                       # the last, wrong before its end
])
def test_a_bad_line_is_still_a_bad_line(tmp_path, lines, bad):
    path = _write(tmp_path / "a.jsonl", "\n".join(lines).encode("utf-8"))
    with pytest.raises(UserError, match=rf"bad JSONL line in .*a\.jsonl line {bad}: .*--skip-bad"):
        _read(path)


def test_only_a_last_line_without_a_newline_is_unterminated():
    assert [type(x) for x in lines_of(iter(["a\nb", "\r\nc"]))] == [str, str, Unterminated]
    assert [type(x) for x in lines_of(iter(["a\r\n", "b\r"]))] == [str, str]
    assert list(lines_of(iter(["a\r", "\nb\r"]))) == ["a", "b"]


def test_parse_jsonl_line_tells_a_cut_last_line_from_a_bad_one():
    with pytest.raises(LineCut, match="looks cut short at line 9"):
        parse_jsonl_line(Unterminated('{"text": "今天', ), 9, "jsonl:a")
    with pytest.raises(ValueError, match="Expecting"):  # the same text, a newline after it
        parse_jsonl_line('{"text": "今天"', 9, "jsonl:a")
    with pytest.raises(ValueError, match="Extra data"):
        parse_jsonl_line(Unterminated('{"text": "今天"} x'), 9, "jsonl:a")
    assert parse_jsonl_line(Unterminated(LINES[0]), 9, "jsonl:a").text == TEXTS[0]
