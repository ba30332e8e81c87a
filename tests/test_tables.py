"""The one table reader: column names, encodings, skipped and malformed rows, --strict."""

from __future__ import annotations

import argparse
import gzip
import json

import pytest

from zhbert.errors import UserError
from zhbert.tables import add_table_arguments, is_table, read_table, table_options

REVIEWS = [("1", "房间干净，服务很好。"), ("0", "太吵了，不会再来"), ("1", "性价比高，推荐！")]


def write_csv(path, header, rows, encoding="utf-8"):
    lines = [",".join(header)] + [",".join(r) for r in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def test_public_sentiment_csv_label_review(tmp_path, capsys):
    """The issue's file: columns label,review and one empty review among the rows."""
    rows = REVIEWS * 3 + [("0", "")] + REVIEWS
    table = read_table(write_csv(tmp_path / "s.csv", ["label", "review"], rows))
    assert (table.columns.text, table.columns.label, table.columns.pair) == ("review", "label", None)
    assert [(r.label, r.text) for r in table.rows] == REVIEWS * 4
    assert dict(table.skipped) == {"empty review": 1} and table.first_skipped == 11
    err = capsys.readouterr().err
    assert "skipped 1 of 13 rows" in err and "line 11" in err and err.count("\n") == 1
    with pytest.raises(UserError, match=r"s.csv, line 11: empty 'review'.*drop --strict"):
        read_table(tmp_path / "s.csv", strict=True)


@pytest.mark.parametrize("text_name", ["text", "sentence", "review", "content", "Text "])
@pytest.mark.parametrize("label_name", ["label", "labels", "LABEL"])
def test_common_names(tmp_path, text_name, label_name):
    table = read_table(write_csv(tmp_path / "t.csv", ["id", text_name, label_name],
                                 [("7", t, lab) for lab, t in REVIEWS]))
    assert [(r.text, r.label) for r in table.rows] == [(t, lab) for lab, t in REVIEWS]
    assert table.rows[0].extra == {"id": "7"}


@pytest.mark.parametrize("first, second", [("text_a", "text_b"), ("sentence1", "sentence2")])
def test_pairs(tmp_path, first, second):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({first: f"甲{i}", second: f"乙{i}", "label": i % 2,
                                        "split": "train"}, ensure_ascii=False) + "\n"
                            for i in range(4)), encoding="utf-8")
    table = read_table(path)
    assert [(r.text, r.pair, r.label) for r in table.rows] == [(f"甲{i}", f"乙{i}", str(i % 2))
                                                                for i in range(4)]
    assert table.rows[0].extra == {"split": "train"}


def test_named_columns_and_unknown_column(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["q", "a", "y"], [("问", "答", "1"), ("问二", "答二", "0")])
    with pytest.raises(UserError, match="no text column.*columns are: q, a, y.*--text-column"):
        read_table(path)
    table = read_table(path, text_column="q", pair_column="a", label_column="y")
    assert [(r.text, r.pair, r.label) for r in table.rows] == [("问", "答", "1"), ("问二", "答二", "0")]
    with pytest.raises(UserError, match=r"no column 'x' \(--label-column\)"):
        read_table(path, text_column="q", label_column="x")
    with pytest.raises(UserError, match="no label column"):
        read_table(path, text_column="q")
    assert read_table(path, text_column="q", need_label=False).rows[1].label is None


def test_malformed_rows_counted(tmp_path, capsys):
    path = tmp_path / "m.jsonl"
    path.write_text('{"text": "好", "label": 1}\n'
                    'not json\n'
                    '[1, 2]\n'
                    '{"text": 5, "label": 1}\n'
                    '{"text": "坏", "label": [0, 1]}\n'
                    '\n'
                    '{"text": "坏", "label": 0.0}\n'
                    '{"text": "好", "label": null}\n', encoding="utf-8")
    table = read_table(path)
    assert [(r.text, r.label, r.line) for r in table.rows] == [("好", "1", 1), ("坏", "0", 7)]
    assert dict(table.skipped) == {"malformed": 4, "empty label": 1}
    assert "skipped 5 of 7 rows" in capsys.readouterr().err
    assert table.to_json()["skipped"] == {"malformed": 4, "empty label": 1}


def test_csv_wrong_field_count_and_quoted_newline(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('label,review\n1,"第一行\n第二行"\n0,多了,一列\n1,好\n', encoding="utf-8")
    table = read_table(path)
    assert [r.text for r in table.rows] == ["第一行\n第二行", "好"]
    with pytest.raises(UserError, match="line 4: 3 fields where the header has 2"):
        read_table(path, strict=True)


@pytest.mark.parametrize("codec", ["gbk", "big5", "utf-16", "utf-8-sig"])
def test_encodings_as_prepare(tmp_path, codec):
    rows = [("1", "這家飯店服務很好。"), ("0", "房間太小了。")] * 20
    table = read_table(write_csv(tmp_path / "e.csv", ["label", "review"], rows, encoding=codec))
    assert [(r.label, r.text) for r in table.rows] == rows


def test_tsv_compressed_and_empty(tmp_path):
    path = tmp_path / "t.tsv.gz"
    path.write_bytes(gzip.compress("sentence\tlabel\n你好，世界\tpos\n".encode("utf-8")))
    assert is_table(path) and not is_table(tmp_path / "s.txt")
    assert [(r.text, r.label) for r in read_table(path).rows] == [("你好，世界", "pos")]
    empty = tmp_path / "e.csv"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(UserError, match="is empty|has no rows"):
        read_table(empty)


def test_cli_options():
    parser = argparse.ArgumentParser()
    add_table_arguments(parser)
    args = parser.parse_args(["--text-column", "q", "--text-pair-column", "a",
                              "--label-column", "y", "--strict"])
    assert table_options(args) == {"text_column": "q", "pair_column": "a",
                                   "label_column": "y", "strict": True}
    parser = argparse.ArgumentParser()
    add_table_arguments(parser, pair=False, label=False)
    assert table_options(parser.parse_args([])) == {"text_column": None, "pair_column": None,
                                                    "label_column": None, "strict": False}


# -- the readers that use it: probe --task-file, fill-mask --input

def test_probe_task_file_label_review_with_an_empty_row(tmp_path, capsys):
    """The issue's sentiment CSV: label,review, one empty review among the rows."""
    from zhbert.probe import load_task_file

    rows = [(str(i % 2), f"评论{i}很好" if i % 2 else f"评论{i}很差") for i in range(40)]
    path = write_csv(tmp_path / "s.csv", ["label", "review"], rows[:17] + [("1", "")] + rows[17:])
    task = load_task_file(path)
    assert len(task.train) + len(task.test) == 40 and task.labels == ("0", "1")
    assert "skipped 1 of 41 rows" in capsys.readouterr().err
    with pytest.raises(UserError, match="line 19: empty 'review'"):
        load_task_file(path, strict=True)
    renamed = write_csv(tmp_path / "r.csv", ["y", "q"], rows)
    task = load_task_file(renamed, text_column="q", label_column="y")
    assert len(task.train) + len(task.test) == 40


def test_probe_cli_options():
    from zhbert import probe

    parser = argparse.ArgumentParser()
    probe.add_arguments(parser)
    args = parser.parse_args(["RUN", "--task-file", "t.csv", "--text-column", "q",
                              "--label-column", "y", "--strict"])
    assert table_options(args) == {"text_column": "q", "pair_column": None,
                                   "label_column": "y", "strict": True}


def test_fill_mask_input_table_or_lines(tmp_path):
    from zhbert.fillmask_cli import _read_sentences

    table = tmp_path / "in.jsonl"
    table.write_text('{"id": 1, "sentence": "北京是中国的[MASK]都。"}\n{"id": 2, "sentence": ""}\n'
                     '{"id": 3, "sentence": "[MASK]天"}\n', encoding="utf-8")
    args = argparse.Namespace(sentences=[], input=str(table), text_column=None, strict=False)
    assert _read_sentences(args)[0] == ["北京是中国的[MASK]都。", "[MASK]天"]
    lines = tmp_path / "in.txt"
    lines.write_bytes("第一[MASK]\n\n第二[MASK]\n".encode("gbk"))
    args = argparse.Namespace(sentences=["零[MASK]"], input=str(lines), text_column=None, strict=False)
    assert _read_sentences(args)[0] == ["零[MASK]", "第一[MASK]", "第二[MASK]"]


def test_a_tsv_task_file_is_read_unquoted_and_long_fields_read(tmp_path):
    """As prepare reads a .tsv: a review opening with '"' swallowed every row after it into
    one text; and a field past csv's 131,072 characters was a malformed row."""
    path = tmp_path / "t.tsv"
    rows = ["label\ttext", '1\t"好看"的电影，推荐', "0\t不好看", "1\t" + "长" * 140_000]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    table = read_table(path)
    assert [(r.label, r.text) for r in table.rows[:2]] == [("1", '"好看"的电影，推荐'), ("0", "不好看")]
    assert len(table.rows[2].text) == 140_000 and not table.skipped
