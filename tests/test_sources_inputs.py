"""Input handling a newcomer tripped over: a saved dataset whose text column is not text,
files a directory source leaves out, and null texts (JSONL, Parquet, saved datasets)."""

from __future__ import annotations

import json

import pytest

from zhbert.cli import main
from zhbert.corpus.sources import iter_documents, resolve_sources
from zhbert.errors import UserError

TEXT = "今天天气很好，我们去公园散步。"


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def _saved(path, rows, split=None):
    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    ds = datasets.Dataset.from_dict({"text": rows})
    (datasets.DatasetDict({split: ds}) if split else ds).save_to_disk(str(path))
    return path


def _parquet(path, rows):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"text": pa.array(rows, pa.string())}), path, row_group_size=2)
    return path


# -- a saved dataset's text column that is not text -----------------------------------

@pytest.mark.parametrize("rows, kind, split", [([1, 2, 3], "int64", None),
                                               ([["甲"], ["乙"]], "list<item: string>", None),
                                               ([1, 2, 3], "int64", "train")])
def test_a_saved_datasets_column_that_is_not_text_is_refused_as_parquets_is(tmp_path, capsys,
                                                                            rows, kind, split):
    """It crashed deep in prepare (len() of an int; a regex on a list), exit 1."""
    src = _saved(tmp_path / "saved", rows, split)
    rc, _, err = _run(capsys, "prepare", str(src), "--out", str(tmp_path / "d"), "--workers", "1")
    assert rc == 2, err
    assert f"column 'text' of {src} holds {kind}, not text; name the text column with --text-column" in err
    assert not (tmp_path / "d").exists()


# -- files a directory leaves out -----------------------------------------------------

def test_a_directory_warns_once_of_the_files_it_does_not_read(tmp_path, capsys):
    root = tmp_path / "corpus"
    (root / ".git").mkdir(parents=True)
    (root / "a.txt").write_text(TEXT, encoding="utf-8")
    for name in ("notes.text", "b.md", "c.pdf", "d.rst"):
        (root / name).write_text(TEXT, encoding="utf-8")
    (root / ".hidden.md").write_text(TEXT)
    (root / ".git" / "config").write_text("[core]")  # a hidden folder's files: not counted
    infos = resolve_sources([str(root)])
    assert [i.path.split("/")[-1] for i in infos] == ["a.txt"]  # unknown formats still unread
    err = capsys.readouterr().err
    assert err.count("warning") == 1, err
    assert "left out 4 files whose names are no corpus file type (b.md, c.pdf, d.rst and 1 more" in err
    assert "rename it to .txt or name it as a source of its own" in err and "config" not in err
    assert sum("left out" in w for i in infos for w in i.warnings) == 1  # in the report too
    [named] = resolve_sources([str(root / "notes.text")])  # as the warning says: read as text
    assert [d.text for d in iter_documents(named)] == [TEXT]


def test_a_directory_without_corpus_files_names_what_it_holds(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "readme.md").write_text(TEXT)
    _saved(root / "wiki", [TEXT])
    with pytest.raises(UserError, match=r"no usable corpus files.*left out 1 file .*readme\.md.*"
                                        r"wiki is a saved Hugging Face dataset: name it"):
        resolve_sources([str(root)])


# -- null texts -----------------------------------------------------------------------

@pytest.mark.parametrize("value, says", [("null", "null"), ("3", "a number"), ('["甲"]', "an array")])
def test_a_jsonl_text_that_is_not_a_string_is_named_with_its_type(tmp_path, value, says):
    """It said 'expected a JSON object with a string "text" field (its keys: text)'."""
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": TEXT}, ensure_ascii=False) + f'\n{{"text": {value}}}\n',
                    encoding="utf-8")
    [info] = resolve_sources([str(path)])
    with pytest.raises(UserError, match=rf'd\.jsonl line 2: the "text" value is {says}, not a '
                                        r"string; fix the line, or pass --skip-bad") as err:
        list(iter_documents(info))
    assert "its keys" not in str(err.value) and "--text-column" not in str(err.value)
    [info] = resolve_sources([str(path)])
    assert [d.text for d in iter_documents(info, skip_bad=True)] == [TEXT]  # as strict as before
    assert len(info.warnings) == 1 and "line 2" in info.warnings[0]


@pytest.mark.parametrize("kind", ["parquet", "hf-dataset"])
def test_null_texts_of_a_table_are_counted_in_one_warning(tmp_path, capsys, kind):
    """They were dropped without a word; "" is no text either, and stays quiet (as in CSV)."""
    rows = [TEXT + "一", None, "", None, TEXT + "二", None]
    src = _parquet(tmp_path / "t.parquet", rows) if kind == "parquet" else _saved(tmp_path / "t", rows)
    [info] = resolve_sources([str(src)])
    docs = list(iter_documents(info))
    assert [(d.doc_id.split("#")[1], d.text) for d in docs] == [("0", TEXT + "一"), ("1", TEXT + "二")]
    assert info.warnings == [f"skipped 3 rows of {src} whose 'text' is null (no text)"]
    assert capsys.readouterr().err.count("warning") == 1


def test_a_plain_file_that_cannot_be_read_is_not_called_undecompressable():
    """/proc/self/mem read as a text input said "cannot be decompressed as " (an empty
    suffix) where the read itself failed."""
    from zhbert.corpus.decoding import read_small_text
    from zhbert.errors import UserError
    with pytest.raises(UserError) as exc:
        read_small_text("/proc/self/mem", "--input file")
    assert "cannot be read" in str(exc.value) and "decompressed" not in str(exc.value)


def test_a_file_in_no_supported_encoding_gets_its_fix_once(tmp_path):
    """The encoding's message ends in "re-encode it as UTF-8", and read_small_text added
    "re-save it as UTF-8 text" after it."""
    from zhbert.corpus.decoding import read_small_text
    from zhbert.errors import UserError
    f = tmp_path / "s.txt"
    f.write_bytes(b"plain ascii words \x80\x81\x82\x83\x84\x85 " * 30)
    with pytest.raises(UserError) as exc:
        read_small_text(f, "--input file")
    assert str(exc.value).count("UTF-8") == 2 and "re-save" not in str(exc.value)  # the list, the fix
