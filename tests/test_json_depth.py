""".json arrays (and objects one after another) whose items nest deeply: ijson's path per
event made time (items) or memory (parse, which json_shape used) grow with the square of
the depth (one object 40,000 levels deep took 7.3 GB); an item deeper than jsonl.MAX_DEPTH
is now a bad item, and memory grows with the depth only."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from zhbert.corpus import jsonl

from zhbert.corpus.jsonl import MAX_DEPTH
from zhbert.corpus.sources import iter_documents, resolve_sources
from zhbert.errors import UserError

TEXTS = [f"今天天气很好，我们去公园散步。第{i}天。" for i in range(3)]


def _nested(levels: int) -> str:
    """An object with a text field whose "x" nests arrays: ``levels`` levels in all."""
    return '{"text": "%s", "x": %s%s}' % (TEXTS[1], "[" * (levels - 1), "]" * (levels - 1))


def _read(path, **kwargs):
    [info] = resolve_sources([str(path)], **kwargs)
    return info, list(iter_documents(info, **kwargs))


@pytest.mark.parametrize("shape", ["array", "values"])
def test_an_item_nested_too_deeply_is_a_bad_item(tmp_path, shape):
    good = [json.dumps({"text": t}, ensure_ascii=False, indent=2) for t in TEXTS]  # not JSON Lines
    items = [good[0], _nested(MAX_DEPTH * 5), good[2]]
    path = tmp_path / "a.json"
    path.write_text("[" + ",".join(items) + "]" if shape == "array" else "\n".join(items), encoding="utf-8")
    with pytest.raises(UserError, match=rf"a\.json item 2: nested more than {MAX_DEPTH:,} levels deep"):
        _read(path)
    info, docs = _read(path, skip_bad=True)
    assert [d.text for d in docs] == [TEXTS[0], TEXTS[2]]
    assert len(info.warnings) == 1 and "item 2: nested more than" in info.warnings[0]


def test_an_item_as_deep_as_the_limit_is_read(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("[%s]" % _nested(MAX_DEPTH), encoding="utf-8")
    info, docs = _read(path)
    assert [d.text for d in docs] == [TEXTS[1]] and not info.warnings


def _peak(levels: int) -> int:
    """Peak bytes Python allocated to tell the shape of, and read, a file whose one object
    (on one line, too deep for json.loads: counted by the parser) nests ``levels`` deep."""
    text = _nested(levels) + "\n"
    tracemalloc.start()
    try:
        assert jsonl.json_shape(iter([text])) == "values"
        docs = jsonl.array_documents(jsonl.Utf8Stream(iter([text])), "json:x", "text", lambda n, why: None)
        for _ in docs:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_grows_with_the_depth_not_its_square():
    """Twice the depth: about twice the memory (the parser's stack), not four times (ijson's
    parse buffered each event with its path, "item.item.item...", as long as its depth)."""
    small, large = _peak(MAX_DEPTH * 3), _peak(MAX_DEPTH * 6)
    assert large < 3 * small
