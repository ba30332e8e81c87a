"""A .json array with a stray byte between two items (a \\x01 or a letter left by a bad
sector or a hand edit) lost every item after it: with --skip-bad the rest of the file was
skipped, without it the error offered no way to keep them. The stray text is now a bad item
of its own: an error naming the file, the character and the fix, or with --skip-bad one
warning, and the items on both sides kept."""

from __future__ import annotations

import json

import pytest

from zhbert.corpus import jsonl
from zhbert.corpus.sources import iter_documents, resolve_sources
from zhbert.errors import UserError

TEXTS = [f"今天天气很好，我们去公园散步。第{i}天。" for i in range(6)]
ITEMS = [json.dumps({"text": t}, ensure_ascii=False) for t in TEXTS]


def _read(path, **kwargs):
    [info] = resolve_sources([str(path)], **kwargs)
    return info, list(iter_documents(info, **kwargs))


def _with(junk: str, before: str = "", after: str = ", ") -> str:
    return "[" + ", ".join(ITEMS[:3]) + before + junk + after + ", ".join(ITEMS[3:]) + "]"


@pytest.mark.parametrize("junk,before,after,told", [
    ("\x01", "", ", ", "'\\x01,'"), ("x", "", ", ", "'x,'"), ("x", ", ", " ", "'x'"),
    ("\x01", ", ", "", "'\\x01'"), ("qq ,", " ", " ", "'qq ,'")])
def test_stray_bytes_between_items_cost_no_item(tmp_path, junk, before, after, told):
    path = tmp_path / "a.json"
    path.write_text(_with(junk, before, after), encoding="utf-8")
    info, docs = _read(path, skip_bad=True)
    assert [d.text for d in docs] == TEXTS
    [warning] = info.warnings
    offset = 1 + len(", ".join(ITEMS[:3])) + len(before)  # "[" and the items before
    assert warning.startswith(f"skipped bad JSON item in {path} item 4: stray text {told} "
                              f"at character {offset:,}, after item 3, is no JSON value (remove it")


def test_stray_bytes_without_skip_bad_are_an_error_naming_the_spot_and_the_fix(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(_with("\x01"), encoding="utf-8")
    at = _with("\x01").index("\x01")
    with pytest.raises(UserError, match=rf"bad JSON item in .*a\.json item 4: stray text '\\x01,' at "
                                        rf"character {at}, after item 3, is no JSON value \(remove it; "
                                        r"--skip-bad skips it .*\); fix the item, or pass --skip-bad"):
        _read(path)


def test_items_after_stray_bytes_keep_their_ids_and_later_damage_is_told_where_it_is(tmp_path):
    """Each stray spot is skipped on its own; damage that cannot be skipped (a quote among
    the stray bytes) still stops the reading, and its character counts from the file's start."""
    text = "[" + ITEMS[0] + "x," + ITEMS[1] + ", \x01" + ITEMS[2] + ' "q", ' + ITEMS[3] + "]"
    path = tmp_path / "a.json"
    path.write_text(text, encoding="utf-8")
    info, docs = _read(path, skip_bad=True)
    assert [d.text for d in docs] == [TEXTS[0], TEXTS[1], TEXTS[2]]
    assert [d.doc_id for d in docs] == ["json:a.json#1", "json:a.json#3", "json:a.json#5"]
    assert len(info.warnings) == 3 and "skipped the rest of" in info.warnings[2]
    quote = text.index('"q"')
    assert f"after item 5 (Unexpected symbol '\"q\"' at {quote})" in info.warnings[2]


def test_a_missing_comma_is_still_damage(tmp_path):
    """Nothing stray to skip: as before, an error (pinned in test_json_arrays too)."""
    path = tmp_path / "a.json"
    path.write_text(_with("", "", " "), encoding="utf-8")
    with pytest.raises(UserError, match=r"stops parsing as JSON after item 3 \(Unexpected symbol '\{'"):
        _read(path)


def test_stray_bytes_in_values_one_after_another_are_skipped():
    """Objects one after another (`jq '.[]'`): the same, with no array to resume."""
    text = ITEMS[0] + "\nx\n" + ITEMS[1] + "\n" + ITEMS[2] + "\n"
    bad = []
    docs = jsonl.array_documents(jsonl.Utf8Stream(iter([text])), "json:x", "text",
                                 lambda n, why: bad.append((n, why)))
    assert [d.text for d in docs] == TEXTS[:3]
    assert bad == [(2, f"stray text 'x' at character {len(ITEMS[0]) + 1}, after item 1, is no JSON value "
                       "(remove it; --skip-bad skips it and reads on at the next object)")]


@pytest.mark.parametrize("size", [1, 3, 4096, 1 << 16])
@pytest.mark.parametrize("where", [0.3, 0.5, 0.97])
def test_stray_bytes_anywhere_in_a_large_array_whatever_the_chunks(size, where):
    """ijson reads 64 KB at a time: the stray byte at any point of a read, the next object
    in the same read or a later one."""
    items = [json.dumps({"text": f"{TEXTS[i % 6]}{i}"}, ensure_ascii=False) for i in range(6000)]
    cut = int(len(items) * where)
    text = "[" + ", ".join(items[:cut]) + ", \x01 " + " " * 70000 * (where > 0.9) + ", ".join(items[cut:]) + "]"
    chunks = (text[at:at + size] for at in range(0, len(text), size))
    bad = []
    docs = list(jsonl.array_documents(jsonl.Utf8Stream(chunks), "json:x", "text",
                                      lambda n, why: bad.append((n, why))))
    assert [d.text for d in docs] == [json.loads(it)["text"] for it in items]
    assert len(bad) == 1 and bad[0][0] == cut + 1
    assert f"at character {text.index(chr(1)):,}, after item {cut:,}" in bad[0][1]


@pytest.mark.parametrize("word", ["n", "nu", "t", "tr", "f", "fals"])
def test_a_stray_word_that_starts_a_literal_is_damage_not_a_cut_file(tmp_path, word):
    """ijson reads a stray "n" or "tr" mid-file as "Incomplete JSON content", as if the file
    ended inside null or true: it was kept as a cut file, with a warning, and every item after
    it was lost, even without --skip-bad. It is damage, told as such."""
    path = tmp_path / "a.json"
    path.write_text(_with(word, before=", "), encoding="utf-8")  # [.., item 3, n, item 4, ..]
    with pytest.raises(UserError, match=r"after item 3 \(a stray word there, part of true, false or null"):
        _read(path)
    # a file that does end inside a literal is still a cut one: its items before are kept
    path.write_text("[" + ", ".join(ITEMS[:2]) + ", " + word, encoding="utf-8")
    _, docs = _read(path)
    assert len(docs) == 2
