"""CSV and TSV corpora: a document per row of the text column, the header not text."""

import csv
import gzip
import io
import json

import pytest

from zhbert.cli import main
from zhbert.corpus.filetypes import KINDS, OPENERS
from zhbert.corpus.sources import iter_documents, resolve_sources
from zhbert.errors import UserError

PLACES = "春夏秋冬东南西北山水花草"


def _texts(n):
    """n distinct two-sentence documents with a quote, a comma and a line break in each."""
    out = []
    for i in range(n):
        a, b, c = PLACES[i % 12], PLACES[(i // 12) % 12], PLACES[(i * 7) % 12]
        out.append(f'{a}{b}村的孩子们今天在{c}边放风筝，大家都说"天气真好"。\n'
                   f"老人们在{a}{c}树下下棋，一直下到太阳落山。")
    return out


def _table(rows, header=("id", "text"), delimiter=","):
    f = io.StringIO(newline="")
    writer = csv.writer(f, delimiter=delimiter)
    writer.writerow(header)
    writer.writerows([i, text] for i, text in enumerate(rows))
    return f.getvalue()


def _docs(path, **kw):
    return [d for info in resolve_sources([str(path)], **kw) for d in iter_documents(info, **kw)]


def test_csv_rows_are_documents_without_header_or_quoting(tmp_path):
    texts = _texts(5)
    path = tmp_path / "data.csv"
    path.write_text(_table(texts), encoding="utf-8")
    docs = _docs(path)
    assert [d.text for d in docs] == texts  # quotes unescaped, the line break kept
    assert docs[0].doc_id == "csv:data.csv#0" and not any("id" in d.text for d in docs)


def test_tsv_compressed_and_another_text_column(tmp_path):
    texts = [t.replace("\n", "") for t in _texts(3)]  # TSV is unquoted: a row is a line
    path = tmp_path / "data.tsv.gz"
    rows = ["id\tbody"] + [f"{i}\t{t}" for i, t in enumerate(texts)]  # its quotes are text
    path.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode("gb18030")))
    assert [d.text for d in _docs(path, text_column="body")] == texts


def test_csv_without_the_text_column_names_its_columns(tmp_path, capsys):
    path = tmp_path / "data.csv"
    path.write_text(_table(_texts(3), ("id", "body")), encoding="utf-8")
    with pytest.raises(UserError, match=r"has no column 'text' \(its columns: id, body\).*--text-column"):
        resolve_sources([str(path)], skip_bad=True)  # the user's option, not a bad file
    rc = main(["prepare", str(path), "--out", str(tmp_path / "out"), "--workers", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "has no column 'text' (its columns: id, body)" in err
    assert not (tmp_path / "out").exists()


def test_bad_row_is_an_error_or_skipped(tmp_path, capsys):
    path = tmp_path / "data.csv"
    texts = _texts(2)
    runaway = '1,"没有收尾的引号\n2,后面一行\n3,他说"好"。\n'  # closed by a stray quote
    path.write_text(_table([texts[0]]) + runaway + _table([texts[1]]).split("\r\n", 1)[1],
                    encoding="utf-8")
    # line 4: the first text has a line break
    with pytest.raises(UserError, match=r"bad CSV row in .*data.csv line 4: .*--skip-bad"):
        _docs(path)
    assert [d.text for d in _docs(path, skip_bad=True)] == texts
    assert "skipped bad CSV row" in capsys.readouterr().err


def test_prepare_splits_a_csv_corpus(tmp_path, capsys):
    path = tmp_path / "data.csv"
    path.write_text(_table(_texts(40)), encoding="utf-8")
    out = tmp_path / "out"
    rc = main(["prepare", str(path), "--out", str(out), "--workers", "1",
               "--min-split-docs", "2", "--no-near-dedup"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["input"]["documents_read"] == 40
    assert report["splits"]["validation"]["documents"] > 0 and report["splits"]["test"]["documents"] > 0


def test_empty_directory_message_lists_every_readable_suffix(tmp_path):
    (tmp_path / "readme.md").write_text("无关")
    with pytest.raises(UserError, match="no usable corpus files") as err:
        resolve_sources([str(tmp_path)])
    assert all(suffix in str(err.value) for suffix in [*KINDS, *OPENERS])
    assert ".parquet" in str(err.value) and ".csv" in str(err.value)
