"""Finding and naming corpus files: what a tester's folders tripped over. Lone surrogate
escapes in JSONL, file names that are not UTF-8, links, hidden folders, a damaged Parquet
file with --skip-bad, JSON and zip files named as sources, and zhbert's own output
inside a source folder."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from zhbert.cli import main
from zhbert.corpus.sources import iter_documents, resolve_sources
from zhbert.corpus.splits import split_hash
from zhbert.errors import UserError

TEXT = "今天天气很好，我们去公园散步。"
GBK_NAME = "新闻语料.txt".encode("gbk")
SHOWN_NAME = "".join(f"\\x{b:02x}" for b in "新闻语料".encode("gbk")) + ".txt"  # as ids show it


def _docs(spec, **kw):
    return [d for info in resolve_sources([str(spec)], **kw) for d in iter_documents(info, **kw)]


def _prepare(capsys, *argv):
    rc = main(["prepare", *map(str, argv), "--workers", "1"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def _is_text(value) -> bool:
    """True where ``value`` (a JSON file's content, a doc id) encodes as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- 1. a lone surrogate escape in a JSONL line -----------------------------------------

@pytest.mark.parametrize("bad", [{"text": "坏的\ud800测试"}, {"text": TEXT, "id": "a\udc00"},
                                 {"text": TEXT, "source": "\udfff"}, {"text": TEXT, "tags": ["\ud83d"]}])
def test_a_lone_surrogate_in_a_jsonl_line_is_a_bad_line(tmp_path, bad):
    """json.loads turns "\\ud800" into a str no UTF-8 encodes: OpenCC, or the split hash of
    the id, crashed with a traceback, --skip-bad or not."""
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": TEXT}) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"d\.jsonl line 2: .*lone surrogate.*fix the line, or "
                                        r"pass --skip-bad"):
        _docs(path)
    [info] = resolve_sources([str(path)])
    assert [d.text for d in iter_documents(info, skip_bad=True)] == [TEXT]
    assert len(info.warnings) == 1 and "line 2" in info.warnings[0] and _is_text(info.warnings[0])


def test_prepare_skips_a_jsonl_line_with_a_lone_surrogate(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    lines = [json.dumps({"text": f"{TEXT}第{i}条。"}) for i in range(5)] + ['{"text": "坏的\\ud800测试"}']
    (src / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rc, err = _prepare(capsys, src, "--out", tmp_path / "d")
    assert rc == 2 and "a.jsonl line 6" in err and "lone surrogate" in err
    rc, err = _prepare(capsys, src, "--out", tmp_path / "d", "--skip-bad")
    assert rc == 0, err
    assert "skipped bad JSONL line" in err


# -- 2. a file name that is not UTF-8 ------------------------------------------------------

def test_a_file_name_that_is_not_utf8_makes_a_stable_text_id(tmp_path):
    """A GBK name from a Windows zip: the doc id held its surrogate escapes, and the split
    hash crashed on them."""
    root = tmp_path / "in"
    root.mkdir()
    with open(os.fsencode(root) + b"/" + GBK_NAME, "w", encoding="utf-8") as f:
        f.write(TEXT)
    [doc] = _docs(root)
    assert doc.doc_id == f"text:in/{SHOWN_NAME}#1"
    assert _is_text(doc.doc_id) and _is_text(doc.source)
    split_hash(doc.doc_id, 42)
    [info] = resolve_sources([str(root)])
    assert _is_text(json.dumps(info.to_json(), ensure_ascii=False))
    [again] = _docs(root)
    assert again.doc_id == doc.doc_id  # the same bytes, the same id


def test_prepare_reads_a_folder_with_a_gbk_file_name(tmp_path, capsys):
    root = tmp_path / "in"
    root.mkdir()
    with open(os.fsencode(root) + b"/" + GBK_NAME, "w", encoding="utf-8") as f:
        f.write("\n\n".join(f"{TEXT}第{i}天。" for i in range(5)))
    rc, err = _prepare(capsys, root, "--out", tmp_path / "d")
    assert rc == 0, err
    for name in ("manifest.json", "report.json"):  # JSON holds text: strict UTF-8 reads it
        json.loads((tmp_path / "d" / name).read_bytes().decode("utf-8"))


# -- 3. symbolic links ----------------------------------------------------------------------

def test_links_to_files_are_read_links_to_folders_are_told(tmp_path, capsys):
    """A link to a file outside the folder crashed (relative_to on the resolved path); a
    linked folder and a broken link went unmentioned."""
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "f.txt").write_text(TEXT + "外。", encoding="utf-8")
    (outside / "sub" / "g.txt").write_text(TEXT + "子。", encoding="utf-8")
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.txt").write_text(TEXT, encoding="utf-8")
    os.symlink(outside / "f.txt", root / "link.txt")
    os.symlink(outside / "sub", root / "linked")
    os.symlink(tmp_path / "missing.txt", root / "gone.txt")
    docs = _docs(root)
    assert sorted((d.doc_id, d.text) for d in docs) == [("text:in/a.txt#1", TEXT),
                                                       ("text:in/link.txt#1", TEXT + "外。")]
    err = capsys.readouterr().err
    assert err.count("warning") == 1, err
    assert "left out 1 link to a folder (linked), not followed" in err
    assert "left out 1 broken link (gone.txt)" in err


# -- 4. hidden folders and files ----------------------------------------------------------------

def test_hidden_folders_and_files_are_not_read_but_named(tmp_path, capsys):
    root = tmp_path / ".corpus"  # hidden itself: named by the user, so read
    for folder in (".hidden", ".ipynb_checkpoints", ".Trash-1000", ".git", "sub/.cache"):
        (root / folder).mkdir(parents=True)
        (root / folder / "x.txt").write_text("不读。", encoding="utf-8")
    (root / "sub" / "b.txt").write_text(TEXT, encoding="utf-8")
    (root / "sub" / ".draft.txt").write_text(TEXT, encoding="utf-8")  # hidden, named as corpus
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")        # hidden metadata: quiet
    assert [d.doc_id for d in _docs(root)] == ["text:.corpus/sub/b.txt#1"]
    err = capsys.readouterr().err
    assert err.count("warning") == 1, err  # named, as other left-out files are, in one warning
    assert ("left out 5 hidden folders and 1 hidden file (.Trash-1000, .git, .hidden and 3 more): "
            "names starting with '.' are not read") in err
    assert "name one as a source of its own" in err and ".DS_Store" not in err
    [named] = resolve_sources([str(root / "sub" / ".draft.txt")])  # as the warning says
    assert [d.text for d in iter_documents(named)] == [TEXT]


# -- 5. a damaged Parquet file with --skip-bad ----------------------------------------------

def test_skip_bad_skips_a_damaged_parquet_file(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    root = tmp_path / "in"
    root.mkdir()
    pq.write_table(pa.table({"text": [TEXT + str(i) for i in range(20)]}), root / "good.parquet")
    data = (root / "good.parquet").read_bytes()
    (root / "bad.parquet").write_bytes(data[:len(data) // 2])  # a copy cut short
    with pytest.raises(UserError, match=r"bad\.parquet is not a readable Parquet file .*"
                                        r"or pass --skip-bad to skip bad files"):
        resolve_sources([str(root)])
    infos = resolve_sources([str(root)], skip_bad=True)
    assert [i.skipped for i in infos] == [True, False]
    assert f"skipped {root / 'bad.parquet'}: it is not a readable Parquet file" in infos[0].warnings[0]
    assert len(_docs(root, skip_bad=True)) == 20


# -- 6 and 7. archives named as sources (JSON is read: tests/test_json_arrays.py) ------------

def test_zip_files_named_as_sources_are_refused_with_the_fix(tmp_path):
    """A zip was "a binary file, not text"."""
    archive = tmp_path / "c.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.txt", TEXT)
    with pytest.raises(UserError, match=r"c\.zip is a zip archive, and archives are not read: "
                                        r"unpack it \(`unzip .*c\.zip -d DIR`\)"):
        resolve_sources([str(archive)])


def test_a_folder_tells_archives_apart_from_text_to_rename(tmp_path, capsys):
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.txt").write_text(TEXT, encoding="utf-8")
    (root / "b.json").write_text("[]", encoding="utf-8")  # an empty array: read, no documents
    (root / "c.tar.gz").write_bytes(b"\x1f\x8b")
    (root / "d.md").write_text(TEXT, encoding="utf-8")
    infos = resolve_sources([str(root)])
    assert [(Path(i.path).name, i.kind) for i in infos] == [("a.txt", "text"), ("b.json", "json")]
    err = capsys.readouterr().err
    assert "left out 1 file whose names are no corpus file type (d.md;" in err
    assert "left out c.tar.gz: archives are not read" in err


# -- 7. zhbert's own output inside a source folder -------------------------------------------

def test_zhbert_outputs_inside_a_source_folder_are_not_read(tmp_path, capsys):
    """`prepare in/x --out in/x/data`, then `prepare in/x`: vocab.txt was read as corpus."""
    src = tmp_path / "x"
    src.mkdir()
    (src / "a.txt").write_text("\n\n".join(f"{TEXT}第{i}天。" for i in range(5)), encoding="utf-8")
    rc, err = _prepare(capsys, src, "--out", src / "data")
    assert rc == 0, err
    run = src / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"config": {}, "config_hash": "abc"}))
    (run / "history.jsonl").write_text(json.dumps({"text": "不读。"}) + "\n")
    model = src / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"\0")
    (model / "vocab.txt").write_text("[PAD]\n")
    web = src / "site"  # another program's manifest.json: its folder is read
    web.mkdir()
    (web / "manifest.json").write_text(json.dumps({"name": "app"}))
    (web / "c.txt").write_text(TEXT, encoding="utf-8")
    infos = resolve_sources([str(src)])
    read = [i.path for i in infos if not i.skipped]
    assert read == [str((src / "a.txt").resolve()), str((web / "c.txt").resolve())]
    [app] = [i for i in infos if i.skipped]  # its manifest.json is one JSON object: metadata
    assert app.path == str((web / "manifest.json").resolve()) and "holds one JSON object" in app.warnings[0]
    err = capsys.readouterr().err
    assert f"left out {src / 'data'}: it is a zhbert data directory (zhbert prepare)" in err
    assert f"left out {run}: it is a zhbert training run" in err
    assert f"left out {model}: it is a model" in err
    with pytest.raises(UserError, match=r"holds no usable corpus files.*it is a zhbert data directory"):
        resolve_sources([str(src / "data")])


def test_a_file_named_on_the_command_line_in_gbk_bytes_is_prepared(tmp_path, capsys):
    """The manifest's options held the raw name: UnicodeEncodeError writing manifest.json."""
    import os

    from zhbert.cli import main
    name = os.fsdecode(str(tmp_path).encode() + b"/" + "新闻语料.txt".encode("gbk"))
    with open(name, "w", encoding="utf-8") as f:
        f.write("\n\n".join(f"第{i}段：城市里的居民每天早上都会去河边散步，然后一起喝茶聊天。" for i in range(40)))
    out = tmp_path / "data"
    assert main(["prepare", name, "--out", str(out), "--workers", "1", "--no-near-dedup"]) == 0
    sources = json.loads((out / "manifest.json").read_bytes().decode("utf-8"))["config"]["sources"]
    assert sources == [str(tmp_path) + "/\\xd0\\xc2\\xce\\xc5\\xd3\\xef\\xc1\\xcf.txt"]


def test_a_state_json_alone_does_not_make_a_folder_a_saved_dataset(tmp_path):
    """Any state.json had made its folder a saved dataset, skipped whole (a review)."""
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "state.json").write_text('{"step": 3}')
    (root / "sub" / "a.txt").write_text(TEXT, encoding="utf-8")
    assert [d.text for d in _docs(root)] == [TEXT]


def test_every_bad_file_of_a_folder_is_named_in_the_one_error(tmp_path):
    """A folder with two empty files named only the first: a newcomer fixed them one run at
    a time (a tester)."""
    for name in ("a.txt", "b.txt", "c.txt"):
        (tmp_path / name).write_text("" if name != "b.txt" else "今天天气很好。\n", encoding="utf-8")
    with pytest.raises(UserError) as err:
        resolve_sources([str(tmp_path)])
    message = str(err.value)
    assert message.startswith(f"corpus file {tmp_path / 'a.txt'} is empty") and "pass --skip-bad" in message
    assert message.endswith(f"(also bad in {tmp_path}: {tmp_path / 'c.txt'})")
    assert [Path(i.path).name for i in resolve_sources([str(tmp_path)], skip_bad=True)
            if not i.skipped] == ["b.txt"]
