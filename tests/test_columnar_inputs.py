"""Tables as corpora (corpus.columnar): TSV unquoted, CSV quotes that run away, long fields,
rows short of the text column, a duplicated text column, Parquet text stored as dictionary,
string_view or large_string."""

import csv
import io

import pytest

from zhbert.corpus.sources import iter_documents, resolve_sources
from zhbert.errors import UserError


def _docs(path, **kw):
    return [d for info in resolve_sources([str(path)], **kw) for d in iter_documents(info, **kw)]


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_tsv_quote_is_text_not_quoting(tmp_path):
    # every sixth text opens with an unclosed '"': quoted TSV merged the rows after it
    texts = [f'{"“" if i % 6 else chr(34)}第{i}段：他说"好"，又说"再见"。' for i in range(60)]
    path = _write(tmp_path / "q.tsv", ["id\ttext\tlabel"] + [f"{i}\t{t}\tpos" for i, t in enumerate(texts)])
    assert [d.text for d in _docs(path)] == texts  # no id or label taken into a text


def _quoted_csv(texts):
    f = io.StringIO(newline="")
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(["id", "text", "label"])
    writer.writerows([i, t, "pos"] for i, t in enumerate(texts))
    return f.getvalue()


def test_well_quoted_multi_line_csv_fields_are_read_as_written(tmp_path):
    # quotes, commas, blank lines and many lines inside quoted fields: never a runaway
    texts = [f'第{i}篇，"引语"开头。\n\n' + "\n".join(f'第{j}段, 他说"是"。' for j in range(i * 20))
             for i in range(12)]
    path = tmp_path / "ok.csv"
    path.write_text(_quoted_csv(texts), encoding="utf-8")
    assert [d.text for d in _docs(path)] == texts


def test_a_csv_quote_that_runs_away_is_a_bad_row(tmp_path, capsys):
    lines = ["id,text,label", "0,第一行。,pos", '1,"没有收尾的引号,neg'] + \
            [f"{i},第{i}行。,pos" for i in range(2, 8)] + ['8,他说"好"。,neg', "9,最后一行。,pos"]
    path = _write(tmp_path / "r.csv", lines)
    with pytest.raises(UserError, match=r"bad CSV row in .*r\.csv line 3: a quoted field opened "
                                        r"here runs over 8 lines, to line 10.*--skip-bad"):
        _docs(path)
    assert [d.text for d in _docs(path, skip_bad=True)] == ["第一行。", "最后一行。"]
    assert "skipped bad CSV row in" in capsys.readouterr().err


def test_an_unclosed_quote_to_the_end_of_the_csv_is_a_bad_row(tmp_path):
    path = _write(tmp_path / "e.csv", ["id,text", "0,好。", '1,"没有收尾', "2,后面", "3,都被吞了"])
    with pytest.raises(UserError, match=r"e\.csv line 3: .*runs over 3 lines, to line 5"):
        _docs(path)


def test_a_csv_field_longer_than_csvs_default_limit_is_read(tmp_path):
    limit = csv.field_size_limit()
    article = "长" * (limit + 10)
    path = tmp_path / "long.csv"
    path.write_text(_quoted_csv(["短文。", article, "又一篇。"]), encoding="utf-8")
    assert [d.text for d in _docs(path)] == ["短文。", article, "又一篇。"]
    assert csv.field_size_limit() == limit  # lifted while parsing only


def test_rows_short_of_the_text_column_are_counted_in_a_warning(tmp_path, capsys):
    path = _write(tmp_path / "s.csv", ["id,label,text", "0,pos,第一篇。", "1,neg", "", "2",
                                       "3,pos,第二篇。"])
    docs = _docs(path)
    assert [d.text for d in docs] == ["第一篇。", "第二篇。"]
    assert [d.doc_id for d in docs] == ["csv:s.csv#0", "csv:s.csv#1"]
    err = capsys.readouterr().err
    assert "skipped 2 rows of" in err and "s.csv" in err and "'text' is missing (a short row) or null" in err, err  # the blank line not


def test_a_duplicated_text_column_is_refused_naming_it(tmp_path):
    path = _write(tmp_path / "d.csv", ["id,text,text,body", "0,甲。,乙。,丙。"])
    with pytest.raises(UserError, match=r"d\.csv: its header names the column 'text' 2 times "
                                        r"\(its columns: id, text, text, body\); rename"):
        resolve_sources([str(path)])
    assert [d.text for d in _docs(path, text_column="body")] == ["丙。"]  # a unique column


@pytest.mark.parametrize("kind", ["category", "string_view", "large_string"])
def test_parquet_text_stored_another_way_is_text(tmp_path, kind):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = ["第一篇。", None, "第二篇。", "第一篇。"]
    column = pa.array(rows).dictionary_encode() if kind == "category" \
        else pa.array(rows, getattr(pa, kind)())
    pq.write_table(pa.table({"text": column}), tmp_path / "t.parquet")
    assert [d.text for d in _docs(tmp_path / "t.parquet")] == ["第一篇。", "第二篇。", "第一篇。"]


def test_a_parquet_column_of_numbers_is_still_refused(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "n.parquet")
    with pytest.raises(UserError, match=r"column 'text' of .*n\.parquet holds int64, not text; "
                                        r"name the text column with --text-column"):
        resolve_sources([str(tmp_path / "n.parquet")])


def test_a_parquet_string_that_is_not_utf8_is_one_line(tmp_path):
    """A Parquet writer that skipped Arrow's validation left bytes that are not UTF-8 in a
    string column: to_pylist's UnicodeDecodeError was a traceback."""
    import struct

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from zhbert.corpus.columnar import parquet_texts
    vals = ["第一行。".encode(), b"\xff\xfe" + "坏的。".encode(), "第三行。".encode()]
    ends = [0]
    for v in vals:
        ends.append(ends[-1] + len(v))
    column = pa.Array.from_buffers(pa.string(), len(vals), [None, pa.py_buffer(struct.pack("<4i", *ends)),
                                                            pa.py_buffer(b"".join(vals))])
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"text": column}), path)
    with pytest.raises(UserError, match=r"bad.parquet: row 1 of column 'text' is not valid UTF-8"):
        list(parquet_texts(path, "text"))


def test_undecodable_bytes_in_a_header_column_name_are_named_in_a_warning(tmp_path, capsys):
    """--skip-bad drops the rows whose text holds stray bytes; the header is no row, and a
    column name holding them (one --text-column cannot name) passed without a word."""
    rows = [f"{i},今天天气很好，我们去公园散步第{i}次。,pos\n".encode() for i in range(50)]
    path = tmp_path / "h.csv"
    path.write_bytes(b"id,text,lab\x93el\n" + b"".join(rows))
    assert len(_docs(path, skip_bad=True)) == 50
    err = capsys.readouterr().err
    assert f"{path}: undecodable bytes in its header's column name 'lab\\x93el' (shown as \\xNN)" in err, err
    [info] = resolve_sources([str(path)], skip_bad=True)  # in the manifest's warnings too
    assert any("column name 'lab\\x93el'" in w for w in info.warnings), info.warnings
    path.write_bytes(b"id,te\x93xt,label\n" + b"".join(rows))  # the text column's own name
    with pytest.raises(UserError, match=r"has no column 'text' \(its columns: id, te\\x93xt, label\)"):
        resolve_sources([str(path)], skip_bad=True)
