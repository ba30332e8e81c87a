"""JSON Lines and .json arrays hold documents to one nesting limit (jsonl.MAX_DEPTH, where a
JSONL line had been refused somewhere past 900 levels, wherever json.loads ran out of Python's
recursion limit). NaN and Infinity: a JSONL line is read with them, as json.loads reads it; a
.json stops at one (ijson cannot read past it), and its error names the item and the value
where it had said "Unexpected symbol 'N'"."""

from __future__ import annotations

import json
import re
import sys

import pytest

from zhbert.corpus.jsonl import MAX_DEPTH
from zhbert.corpus.sources import iter_documents, resolve_sources
from zhbert.errors import UserError

TEXTS = [f"今天天气很好，我们去公园散步。第{i}天。" for i in range(3)]
TOO_DEEP = f"nested more than {MAX_DEPTH:,} levels deep"
NOT_JSON = "holds {}, which is no JSON value (json.dumps writes it for a float NaN or infinity"


def _nested(levels: int) -> str:
    """An object with a text field whose "x" nests arrays: ``levels`` levels in all."""
    return '{"text": "%s", "x": %s%s}' % (TEXTS[1], "[" * (levels - 1), "]" * (levels - 1))


def _with(middle: str) -> list[str]:
    return [json.dumps({"text": TEXTS[0]}, ensure_ascii=False), middle,
            json.dumps({"text": TEXTS[2]}, ensure_ascii=False)]


def _file(tmp_path, shape: str, items: list[str]):
    path = tmp_path / ("a.jsonl" if shape == "jsonl" else "a.json")
    path.write_text("\n".join(items) + "\n" if shape == "jsonl" else "[" + ",\n".join(items) + "]",
                    encoding="utf-8")
    return path


def _read(path, **kwargs):
    [info] = resolve_sources([str(path)], **kwargs)
    return info, [d.text for d in iter_documents(info, **kwargs)]


@pytest.mark.parametrize("shape", ["jsonl", "json"])
def test_one_depth_limit_for_both_formats(tmp_path, shape):
    where = "line" if shape == "jsonl" else "item"
    info, texts = _read(_file(tmp_path, shape, _with(_nested(MAX_DEPTH - 1))))
    assert texts == [TEXTS[0], TEXTS[1], TEXTS[2]] and not info.warnings
    info, texts = _read(_file(tmp_path, shape, _with(_nested(MAX_DEPTH))))
    assert texts == [TEXTS[0], TEXTS[1], TEXTS[2]]
    path = _file(tmp_path, shape, _with(_nested(MAX_DEPTH + 1)))
    with pytest.raises(UserError, match=rf"a\.{shape} {where} 2: {TOO_DEEP}; fix the {where}"):
        _read(path)
    info, texts = _read(path, skip_bad=True)
    assert texts == [TEXTS[0], TEXTS[2]] and f"{where} 2: {TOO_DEEP}" in info.warnings[0]


def test_the_limit_holds_where_json_loads_could_go_deeper(tmp_path):
    """With Python's recursion limit raised (and from Python 3.12 on, which counts json's
    levels apart from it), json.loads took 1,001 levels where a .json refuses them."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        path = _file(tmp_path, "jsonl", _with(_nested(MAX_DEPTH + 1)))
        with pytest.raises(UserError, match=rf"a\.jsonl line 2: {TOO_DEEP}"):
            _read(path)
        assert _read(_file(tmp_path, "jsonl", _with(_nested(MAX_DEPTH))))[1][1] == TEXTS[1]
    finally:
        sys.setrecursionlimit(old)


def test_wiki_links_and_nan_in_a_long_line_are_read_where_json_goes_deep(tmp_path):
    """Where json.loads nests past MAX_DEPTH (Python 3.12+, or a raised recursion limit), a
    line with more than 1,000 brackets inside its strings ([[links]]) had been sent to ijson,
    which refused its NaN and 1e400 (a review)."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1_500)
    try:
        line = '{"text": "%s", "s": NaN, "big": 1e400}' % ("维基[[链接]]" * 600)
        info, texts = _read(_file(tmp_path, "jsonl", _with(line)))
        assert texts[1] == "维基[[链接]]" * 600 and not info.warnings
    finally:
        sys.setrecursionlimit(old)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_keep_a_jsonl_line_and_are_named_in_a_json(tmp_path, constant):
    middle = '{"text": "%s", "score": %s}' % (TEXTS[1], constant)
    info, texts = _read(_file(tmp_path, "jsonl", _with(middle)))
    assert texts == TEXTS and not info.warnings
    why = re.escape(NOT_JSON.format(constant))
    with pytest.raises(UserError, match=rf"a\.json stops parsing as JSON after item 1 \(item 2 {why}"):
        _read(_file(tmp_path, "json", _with(middle)))


def test_nan_deep_into_a_large_json_is_named(tmp_path):
    """ijson names the lexeme ("N", "I" or "-") and its character offset: the reader looks
    it up in the text it last handed over, past several 64 KB reads of Chinese."""
    items = [json.dumps({"text": TEXTS[i % 3] * 20}, ensure_ascii=False) for i in range(2000)]
    items[1500] = '{"text": "%s", "score": -Infinity}' % TEXTS[1]
    path = tmp_path / "a.json"
    path.write_text("[" + ",\n".join(items) + "]", encoding="utf-8")
    assert path.stat().st_size > 5 * 65536
    with pytest.raises(UserError, match=r"after item 1,500 \(item 1,501 holds -Infinity, which"):
        _read(path)
    items[1500] = '{"text": "%s", "score": -x}' % TEXTS[1]  # a stray "-", told as ijson tells it
    path.write_text("[" + ",\n".join(items) + "]", encoding="utf-8")
    with pytest.raises(UserError, match=r"after item 1,500 \(Unexpected symbol '-x' at \d+\)"):
        _read(path)
