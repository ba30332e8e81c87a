"""One reader of CSV/TSV rows (columnar.TableRows) for corpus tables and the small tables of
probe and fill-mask: a runaway quote, a long field and a bad header read the same way in
both, and csv's process-wide field size limit is lifted once per reader, not per row."""

from __future__ import annotations

import csv

import pytest

from zhbert.corpus import columnar
from zhbert.errors import UserError
from zhbert.tables import read_table

# row 3 opens a quote that a stray one on row 5 closes: csv (lenient) read rows 3-5 as one text
RUNAWAY = ["id,text", "1,北京是中国的[MASK]都。", '2,"他说[MASK]好', "3,上海是一个[MASK]市。",
           '4,他说"好"。', "5,今天天气很[MASK]。"]
FIRST, LAST = "北京是中国的[MASK]都。", "今天天气很[MASK]。"


def _write(path, lines, newline="\n"):
    path.write_bytes((newline.join(lines) + newline).encode("utf-8"))
    return path


def test_a_table_quote_that_runs_away_is_a_bad_row_not_one_text(tmp_path, capsys):
    path = _write(tmp_path / "in.csv", RUNAWAY)
    table = read_table(path, need_label=False)
    assert [(r.line, r.text) for r in table.rows] == [(2, FIRST), (6, LAST)]
    err = capsys.readouterr().err
    assert "skipped 3 of 5 rows in" in err and "the first, at line 3: a quoted field opened here " \
           "runs over 3 lines, to line 5" in err and "twice" in err, err
    with pytest.raises(UserError, match=r"in\.csv, line 3: a quoted field opened here runs over 3 "
                                        r"lines, to line 5, .*close it.*drop --strict"):
        read_table(path, need_label=False, strict=True)


def test_a_table_quote_that_runs_to_the_end_is_not_one_long_text(tmp_path):
    lines = RUNAWAY[:3] + [f"{i},第{i}行[MASK]。" for i in range(3, 3000)]
    table = read_table(_write(tmp_path / "in.csv", lines), need_label=False)
    assert [r.text for r in table.rows] == ["北京是中国的[MASK]都。"]
    assert table.skipped == {"malformed": 2998} and table.first_skipped == 3


def test_a_table_header_is_read_as_a_corpus_header(tmp_path):
    """A header field past csv's 131,072 characters was a csv.Error traceback; a quote that
    runs away from the header took the rows after it in as column names."""
    path = _write(tmp_path / "h.csv", ["id,text," + "x" * 200_000, "1,北京是中国的[MASK]都。,a"])
    assert [r.text for r in read_table(path, need_label=False).rows] == ["北京是中国的[MASK]都。"]
    path = _write(tmp_path / "q.csv", ['id,text,"note', "1,好,a", '2,坏"x,b'])
    with pytest.raises(UserError, match=r"q\.csv: cannot read its header row \(line 1: a quoted "
                                        r"field opened here runs over 3 lines"):
        read_table(path, need_label=False)
    with pytest.raises(UserError, match=r"q\.csv: cannot read its header row \(line 1: a quoted"):
        columnar.check_csv(path, path.read_text("utf-8").splitlines(), "csv", "text", print)


def test_crlf_table_quoted_line_breaks_read_as_prepare_reads_them(tmp_path):
    path = _write(tmp_path / "c.csv", ["label,text", '1,"第一行', '第二行"', "0,好"], newline="\r\n")
    table = read_table(path)
    assert [(r.line, r.text) for r in table.rows] == [(3, "第一行\n第二行"), (4, "好")]


def test_readers_one_inside_another_keep_the_limit_lifted_until_the_last_ends():
    """Two tables read at once (a generator left half-read, another begun): the first to end
    put back csv's default while the other still read, and its long field failed."""
    limit = csv.field_size_limit()
    long_text = "长" * (limit + 10)
    first = columnar.csv_texts(["text", "甲。", "乙。"], "csv", "text", lambda *a: pytest.fail(str(a)))
    second = columnar.csv_texts(["text", "丙。", long_text], "csv", "text", lambda *a: pytest.fail(str(a)))
    assert next(first) == "甲。" and next(second) == "丙。"
    assert list(first) == ["乙。"]  # the first ends while the second is half-read
    assert list(second) == [long_text]
    assert csv.field_size_limit() == limit
    third = columnar.csv_texts(["text", "丁。", "戊。"], "csv", "text", lambda *a: None)
    assert next(third) == "丁。"
    third.close()  # left half-read: the limit goes back when it is closed
    assert csv.field_size_limit() == limit


def test_a_bad_row_error_puts_the_limit_back_at_once(tmp_path):
    """Without --skip-bad a bad row raises out of the reading: the traceback holds the rows
    half-read, and csv's limit must not stay lifted for as long as it lives."""
    from zhbert.corpus.sources import iter_documents, resolve_sources

    limit = csv.field_size_limit()
    path = _write(tmp_path / "r.csv", RUNAWAY)
    [info] = resolve_sources([str(path)])
    with pytest.raises(UserError, match=r"r\.csv line 3: a quoted field") as err:
        list(iter_documents(info))
    assert err.value is not None and csv.field_size_limit() == limit


def test_a_quote_left_open_on_the_last_line_is_a_bad_row(tmp_path):
    """csv closes a field left open at the end of the file without a word: the last row's
    answer read as '公' under --strict (a re-test)."""
    path = _write(tmp_path / "t.csv", ["text,answer", "今天天气很[MASK]。,好", '我们一起去[MASK]园散步,"公'])
    table = read_table(path, need_label=False)
    assert [r.text for r in table.rows] == ["今天天气很[MASK]。"]
    assert table.first_skipped == 3 and "is never closed" in table.first_why
    with pytest.raises(UserError, match=r"t\.csv, line 3: a quoted field opened here is never closed"):
        read_table(path, need_label=False, strict=True)
