""".json corpus files: a JSON array of objects (WuDaoCorpora's shape), streamed an item at a
time, or JSON Lines under the .json name (news2016zh, webtext2019zh), told by content. A
.json holding one object is metadata: refused when named, left out of a folder."""

from __future__ import annotations

import gc
import gzip
import itertools
import json
import zlib

import pytest

from zhbert.corpus import jsonl
from zhbert.corpus.sources import iter_documents, resolve_sources
from zhbert.errors import UserError

TEXTS = [f"今天天气很好，我们去公园散步。第{i}天。" for i in range(6)]


def _objects(n: int = 6) -> list[dict]:
    return [{"id": 100 + i, "title": f"标题{i}", "content": TEXTS[i]} for i in range(n)]


def _read(path, **kwargs):
    [info] = resolve_sources([str(path)], **kwargs)
    return info, list(iter_documents(info, **kwargs))


def test_an_array_of_objects_is_read_with_its_text_column(tmp_path):
    path = tmp_path / "wudao.json"
    path.write_text(json.dumps(_objects(), ensure_ascii=False, indent=2), encoding="utf-8")
    info, docs = _read(path, text_column="content")
    assert info.kind == "json" and info.encoding == "utf-8"
    assert [(d.doc_id, d.text) for d in docs] == [(f"json:wudao.json#{100 + i}", TEXTS[i]) for i in range(6)]
    with pytest.raises(UserError, match=r'wudao\.json item 1: expected a JSON object with a string "text" '
                                        r"field \(its keys: id, title, content\); name the text's field "
                                        r"with --text-column"):
        _read(path)


def test_json_lines_named_json_read_as_jsonl(tmp_path):
    path = tmp_path / "news2016zh_train.json"
    path.write_text("\n".join(json.dumps({"content": t}, ensure_ascii=False) for t in TEXTS) + "\n",
                    encoding="utf-8")
    info, docs = _read(path, text_column="content")
    assert info.kind == "jsonl" and [d.text for d in docs] == TEXTS
    assert [d.doc_id for d in docs][:2] == ["jsonl:news2016zh_train.json#1", "jsonl:news2016zh_train.json#2"]


@pytest.mark.parametrize("content", [json.dumps({"name": "app", "version": 2}, indent=2),
                                     json.dumps({"name": "app"})])
def test_one_object_is_refused_when_named_and_left_out_of_a_folder(tmp_path, content):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "meta.json").write_text(content, encoding="utf-8")
    (root / "a.json").write_text(json.dumps([{"text": t} for t in TEXTS], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(UserError, match=r"meta\.json holds one JSON object, not documents; zhbert reads "
                                        r"a JSON array of objects or JSON Lines .*jq -c '\.KEY\[\]'") as err:
        resolve_sources([str(root / "meta.json")])
    assert "--skip-bad" not in str(err.value)
    infos = resolve_sources([str(root)])
    assert [(i.kind, i.skipped) for i in infos] == [("json", False), ("json", True)]
    assert "holds one JSON object" in infos[1].warnings[0]
    assert [d.text for i in infos for d in iter_documents(i)] == TEXTS


def test_a_one_line_object_with_the_text_field_is_one_document(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"text": TEXTS[0]}, ensure_ascii=False), encoding="utf-8")
    info, docs = _read(path)
    assert info.kind == "jsonl" and [d.text for d in docs] == TEXTS[:1]


def test_json_that_is_no_documents_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('"just a string"', encoding="utf-8")
    with pytest.raises(UserError, match=r"x\.json is not a JSON array of objects, JSON Lines or objects "
                                        r"one after another"):
        resolve_sources([str(path)])


def test_a_bad_item_is_an_error_or_skipped(tmp_path):
    items = [{"text": t} for t in TEXTS]
    items[2] = {"text": 3}
    path = tmp_path / "a.json"
    path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(UserError, match=r'bad JSON item in .*a\.json item 3: the "text" value is a number'):
        _read(path)
    info, docs = _read(path, skip_bad=True)
    assert [d.text for d in docs] == TEXTS[:2] + TEXTS[3:] and "item 3" in info.warnings[0]


@pytest.mark.parametrize("cut", ["inside a string", "between items", "after a number", "in a literal"])
def test_a_cut_short_plain_array_keeps_its_items_as_a_compressed_one_does(tmp_path, cut):
    """A plain .json cut short was an error without --skip-bad where the same array cut
    short as .json.gz kept its items with a warning (as .jsonl.gz, .txt.gz and dumps do):
    both keep every complete item and warn; damage with JSON after it is still an error."""
    items = [{"text": t, "n": 7, "ok": True} for t in TEXTS]
    data = json.dumps(items, ensure_ascii=False).encode()
    end = {"inside a string": data.index(TEXTS[4].encode()) + 6, "between items": data.index(b"}, {") + 2,
           "after a number": data.index(b"7", data.index(TEXTS[4].encode())) + 1,
           "in a literal": data.index(b"tr", data.index(TEXTS[4].encode())) + 2}[cut]
    kept = TEXTS[:1] if cut == "between items" else TEXTS[:4]
    path = tmp_path / "a.json"
    path.write_bytes(data[:end])
    for skip_bad in (False, True):
        info, docs = _read(path, skip_bad=skip_bad)
        assert [d.text for d in docs] == kept and len(info.warnings) == 1
        assert (f"a.json is truncated or damaged (its JSON ends after item {len(kept)} ("
                in info.warnings[0] and "kept every complete item before the damage" in info.warnings[0])
    path.write_bytes(data.replace(b"}, {", b"} {", 1))  # not cut: broken, and more of it follows
    with pytest.raises(UserError, match=r"a\.json stops parsing as JSON after item 1 \(.*\); fix it, "
                                        r"or pass --skip-bad to keep the items before the damage"):
        _read(path)


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_truncated_compressed_array_keeps_every_complete_item(tmp_path):
    """Also without a traceback: the damage raised inside ijson's generators left one to
    print "Exception ignored in: <generator object Lexer>" when it was collected."""
    items = [{"text": f"{TEXTS[0]}{i}" * 20} for i in range(4000)]
    data = gzip.compress(json.dumps(items, ensure_ascii=False).encode())
    path = tmp_path / "a.json.gz"
    path.write_bytes(data[:len(data) // 2])
    readable = len(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[:len(data) // 2]))
    ends = itertools.accumulate(len(json.dumps(it, ensure_ascii=False).encode()) + 2 for it in items)
    complete = sum(end - 1 <= readable for end in ends)  # "[" + items, ", " between them
    info, docs = _read(path)
    gc.collect()
    assert 1000 < complete < 4000 and [d.text for d in docs] == [it["text"] for it in items[:complete]]
    assert "truncated or damaged" in info.warnings[0] and "kept every complete item" in info.warnings[0]


def test_a_gbk_array_is_read(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(json.dumps([{"text": t} for t in TEXTS * 5], ensure_ascii=False).encode("gbk"))
    info, docs = _read(path)
    assert info.encoding == "gb18030" and [d.text for d in docs] == TEXTS * 5


@pytest.mark.parametrize("escape", ["\\udc93", "\\ud83d", "\\ud83d\\u4e2d"])
def test_a_lone_surrogate_escape_costs_its_item_only(tmp_path, escape):
    """yajl (ijson's C backend) stopped at a lone low surrogate's escape, and read a lone
    high one as "?" or merged it with the next escape (\\ud83d\\u4e2d: 😭), silently."""
    path = tmp_path / "a.json"
    body = ",".join(json.dumps({"text": t}, ensure_ascii=False) for t in TEXTS)
    path.write_text("[" + body.replace(TEXTS[2], f"坏{escape}字", 1) + "]", encoding="utf-8")
    info, docs = _read(path, skip_bad=True)
    assert [d.text for d in docs] == TEXTS[:2] + TEXTS[3:]
    assert "item 3: the \"text\" value holds a lone surrogate escape" in info.warnings[0]


def test_a_parse_error_reads_as_text(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"text": t} for t in TEXTS], ensure_ascii=False) + " 中文", encoding="utf-8")
    with pytest.raises(UserError, match=r"a\.json stops parsing as JSON after item 6 \(") as err:
        _read(path)
    assert "b'" not in str(err.value) and "\\x" not in str(err.value)


def test_a_jsonl_line_nested_too_deeply_is_a_bad_line(tmp_path):
    path = tmp_path / "a.jsonl"
    deep = json.dumps({"text": TEXTS[0], "x": 0}).replace("0}", "[" * 5000 + "]" * 5000 + "}")
    path.write_text("\n".join([json.dumps({"text": TEXTS[1]}, ensure_ascii=False), deep]), encoding="utf-8")
    with pytest.raises(UserError, match=r"a\.jsonl line 2: nested more than 1,000 levels deep"):
        _read(path)
    info, docs = _read(path, skip_bad=True)
    assert [d.text for d in docs] == [TEXTS[1]]


def test_an_undecodable_byte_costs_its_item_only(tmp_path):
    path = tmp_path / "a.json"
    data = json.dumps([{"text": t} for t in TEXTS * 10], ensure_ascii=False).encode()
    at = data.index(TEXTS[1].encode())
    path.write_bytes(data[:at] + b"\x93" + data[at:])  # a cp1252 quote in item 2
    info, docs = _read(path, skip_bad=True)
    assert len(docs) == 59 and TEXTS[1] not in [d.text for d in docs[:6]]
    assert "item 2: the \"text\" value holds undecodable bytes" in info.warnings[0]


def test_items_are_streamed():
    """One item at a time: the first document comes before the stream is read to its end."""
    text = json.dumps([{"text": t} for t in TEXTS * 2000], ensure_ascii=False)  # ~0.5 MB
    taken = []

    def chunks():
        for start in range(0, len(text), 4096):
            taken.append(4096)
            yield text[start:start + 4096]
    docs = jsonl.array_documents(jsonl.Utf8Stream(chunks()), "json:x", "text", lambda n, why: None)
    assert next(docs).text == TEXTS[0] and 0 < sum(taken) <= 1 << 17 < len(text) // 2
    assert len(list(docs)) == len(TEXTS) * 2000 - 1


def test_many_bad_items_are_named_ten_then_counted(tmp_path):
    """An array of 300 strings with --skip-bad put 300 warnings on the terminal and in the
    manifest."""
    path = tmp_path / "a.json"
    path.write_text(json.dumps([f"第{i}条" for i in range(300)] + [{"text": TEXTS[0]}],
                               ensure_ascii=False), encoding="utf-8")
    info, docs = _read(path, skip_bad=True)
    assert [d.text for d in docs] == TEXTS[:1]
    assert len(info.warnings) == 11 and all("skipped bad JSON item" in w for w in info.warnings[:10])
    assert info.warnings[10] == (f"skipped 290 more bad JSON items in {path} (300 in all; the first "
                                 "10 are named above)")
    assert "bad_parts" not in info.to_json()


def test_objects_one_after_another_are_read(tmp_path):
    """`jq '.[]' wudao.json > out.json` prints pretty objects one after another: refused as
    "holds one JSON object", with the wrong fix."""
    path = tmp_path / "jq.json"
    path.write_text("\n".join(json.dumps(o, ensure_ascii=False, indent=2) for o in _objects()),
                    encoding="utf-8")
    info, docs = _read(path, text_column="content")
    assert info.kind == "json" and [d.text for d in docs] == TEXTS
    assert [d.doc_id for d in docs][:1] == ["json:jq.json#100"]


def test_one_large_compact_object_is_metadata_not_json_lines(tmp_path):
    """A SQuAD-like object written by json.dump, longer than a chunk on its one line, was
    taken for JSON Lines: 'bad JSONL line', and a folder holding it failed."""
    root = tmp_path / "corpus"
    root.mkdir()
    squad = {"version": "v2", "data": [{"context": TEXTS[0] * 40, "id": i} for i in range(400)]}
    (root / "squad.json").write_text(json.dumps(squad, ensure_ascii=False), encoding="utf-8")
    assert (root / "squad.json").stat().st_size > 1 << 17
    (root / "a.jsonl").write_text(json.dumps({"text": TEXTS[1]}, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(UserError, match=r"squad\.json holds one JSON object, not documents"):
        resolve_sources([str(root / "squad.json")])
    infos = resolve_sources([str(root)])
    assert [(i.kind, i.skipped) for i in infos] == [("jsonl", False), ("json", True)]


def test_one_document_larger_than_a_chunk_is_read(tmp_path):
    """One object with the text field, over 64 KB on its one line, was refused as metadata
    where the same object under 64 KB was read (a review)."""
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"text": TEXTS[0] * 3000}, ensure_ascii=False), encoding="utf-8")
    info, docs = _read(path)
    assert [d.text for d in docs] == [TEXTS[0] * 3000]


def test_objects_one_after_another_cut_between_two_are_told(tmp_path, monkeypatch):
    """A compressed file cut between two values: ijson ends cleanly, and the damage had gone
    unsaid (a review)."""
    from zhbert.corpus import decoding, sources

    def cut(path, encoding, lenient=False):
        yield '{"text": "%s"}\n{\n  "text": "%s"\n}\n' % (TEXTS[0], TEXTS[1])
        raise decoding.Truncated("EOFError: cut")
    path = tmp_path / "jq.json"
    path.write_text('{\n  "text": "%s"\n}\n{\n  "text": "%s"\n}\n' % (TEXTS[0], TEXTS[1]), encoding="utf-8")
    [info] = resolve_sources([str(path)])
    monkeypatch.setattr(sources, "decoded", cut)
    assert [d.text for d in iter_documents(info)] == TEXTS[:2]
    assert "truncated or damaged (EOFError: cut)" in info.warnings[0]


def test_the_count_of_bad_items_is_told_when_reading_stops_early(tmp_path):
    """--limit-docs stops reading a file early: the count past the first ten went unsaid."""
    path = tmp_path / "a.json"
    path.write_text(json.dumps([f"第{i}条" for i in range(30)] + [{"text": t} for t in TEXTS],
                               ensure_ascii=False), encoding="utf-8")
    [info] = resolve_sources([str(path)], skip_bad=True)
    docs = iter_documents(info, skip_bad=True)
    assert next(docs).text == TEXTS[0]
    docs.close()
    assert info.warnings[-1].startswith("skipped 20 more bad JSON items in")


@pytest.mark.parametrize("bad", ["\t", "\\x"])
def test_a_string_json_will_not_decode_is_damage_not_a_traceback(tmp_path, bad):
    """A raw tab or an unknown escape in a string escaped as a bare ValueError (a traceback).
    It stops ijson's parse, as other damage does: an error, or the items before it kept."""
    items = [json.dumps({"text": t}, ensure_ascii=False) for t in TEXTS]
    items[2] = '{"text": "坏%s字"}' % bad
    path = tmp_path / "a.json"
    path.write_text("[" + ",".join(items) + "]", encoding="utf-8")
    with pytest.raises(UserError, match=r"a\.json stops parsing as JSON after item 2 \(Invalid "):
        _read(path)
    info, docs = _read(path, skip_bad=True)
    assert [d.text for d in docs] == TEXTS[:2] and "skipped the rest of" in info.warnings[0]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1 << 16])
def test_items_read_the_same_whatever_the_chunks(size):
    """A string, number or literal that straddles the stream's chunks: each item is what
    json reads, escaped quotes and backslashes included (a guard: it passes on ijson's items)."""
    items = [{"text": t + '\\"引号\\\\"' + "\\\\" * i, "id": i, "x": [1.5e3, -0, True, None, {"k": []}],
              "tags": ["a\u4e2d\n"], "n": 12345678901234567890} for i, t in enumerate(TEXTS)]
    for ensure_ascii in (False, True):
        text = json.dumps(items, ensure_ascii=ensure_ascii, indent=1)
        chunks = (text[at:at + size] for at in range(0, len(text), size))
        docs = list(jsonl.array_documents(jsonl.Utf8Stream(chunks), "json:x", "text", pytest.fail))
        assert [(d.text, d.doc_id, d.tags) for d in docs] == [
            (it["text"], f"json:x#{it['id']}", tuple(it["tags"])) for it in items]
