"""A quoted field that never closes (a "runaway") takes in the rows after it: counted as the
rows it cost, not as one ("skipped 1 of 3 rows" had hidden the 2,998 rows a quote on line 3
swallowed), while a corpus reader still reports it once, naming the lines it covers."""

from __future__ import annotations

import pytest

from zhbert.corpus.columnar import TAKEN_IN, TableRows
from zhbert.corpus.sources import iter_documents, resolve_sources
from zhbert.errors import UserError
from zhbert.tables import read_table

# line 3 opens a quote that a stray one on line 5 closes (lenient csv read 3-5 as one text)
RUNAWAY = ["id,text", "1,北京是中国的[MASK]都。", '2,"他说[MASK]好', "3,上海是一个[MASK]市。",
           '4,他说"好"。', "5,今天天气很[MASK]。"]


def _write(path, lines):
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    return path


def test_each_line_a_runaway_took_in_is_a_bad_row():
    rows = TableRows(RUNAWAY, "csv")
    rows.header()
    bad = [(line, why) for line, fields, why in rows.body() if why is not None]
    assert [line for line, _ in bad] == [3, 4, 5]
    assert "runs over 3 lines, to line 5" in bad[0][1]
    assert bad[1][1] == bad[2][1] == TAKEN_IN.format(first=3)


def test_a_blank_line_inside_a_runaway_was_no_row():
    rows = TableRows(RUNAWAY[:3] + [""] + RUNAWAY[3:], "csv")
    rows.header()
    assert [line for line, fields, why in rows.body() if why] == [3, 5, 6]


def test_a_tables_count_says_how_many_rows_a_runaway_cost(tmp_path, capsys):
    table = read_table(_write(tmp_path / "in.csv", RUNAWAY), need_label=False)
    assert [r.line for r in table.rows] == [2, 6]
    assert table.skipped == {"malformed": 3} and table.first_skipped == 3
    assert "skipped 3 of 5 rows in" in capsys.readouterr().err
    lines = RUNAWAY[:3] + [f"{i},第{i}行[MASK]。" for i in range(3, 3000)]  # to the end
    table = read_table(_write(tmp_path / "end.csv", lines), need_label=False)
    assert len(table.rows) == 1 and table.skipped == {"malformed": 2998}


def test_a_corpus_reader_reports_a_runaway_once(tmp_path):
    path = _write(tmp_path / "r.csv", RUNAWAY)
    [info] = resolve_sources([str(path)], skip_bad=True)
    assert [d.text for d in iter_documents(info, skip_bad=True)] == ["北京是中国的[MASK]都。", "今天天气很[MASK]。"]
    [warning] = info.warnings
    assert "r.csv line 3: a quoted field opened here runs over 3 lines, to line 5" in warning
    [info] = resolve_sources([str(path)])
    with pytest.raises(UserError, match=r"r\.csv line 3: a quoted field opened here runs over 3 lines"):
        list(iter_documents(info))
