"""Corpus sources: resolving inputs, encodings, compression, JSONL, the builtin corpus."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import itertools
import json
import lzma
import re
import unicodedata

import pytest
import zstandard

from zhbert.corpus import builtin as builtin_corpus, decoding
from zhbert.corpus.builtin import is_reserved_review, sentiment_reserve
from zhbert.corpus.sources import SourceInfo, iter_documents, resolve_sources
from zhbert.errors import UserError

SIMPLIFIED = "中华人民共和国是一个位于东亚的国家。\n首都是北京，人口众多。\n\n第二段讲述历史与文化。\n"
TRADITIONAL = "中華民國是一個位於東亞的國家。\n首都是臺北，人口眾多。\n\n第二段講述歷史與文化。\n"


def read(path, **kwargs):
    [info] = resolve_sources([str(path)])
    return info, list(iter_documents(info, **kwargs))


# -- text files, encodings, compression ----------------------------------------------

@pytest.mark.parametrize("codec, text, recorded", [
    ("utf-8", SIMPLIFIED, "utf-8"),
    ("utf-8-sig", SIMPLIFIED, "utf-8"),          # BOM stripped
    ("gbk", SIMPLIFIED * 3, "gb18030"),          # GBK decodes as its superset
    ("big5", TRADITIONAL * 3, "big5"),
    ("utf-16", SIMPLIFIED, "utf-16"),            # with BOM
    ("utf-16-le", SIMPLIFIED * 3, "utf-16-le"),  # no BOM
    ("utf-16-be", SIMPLIFIED * 3, "utf-16-be"),
])
def test_encodings(tmp_path, codec, text, recorded):
    path = tmp_path / "a.txt"
    path.write_bytes(text.encode(codec))
    info, docs = read(path)
    assert info.encoding == recorded
    expected = [block.strip() for block in text.split("\n\n") if block.strip()]
    assert [d.text for d in docs] == expected
    assert docs[0].text.startswith(text[:4])  # no BOM, no mojibake
    assert info.documents == len(expected)


@pytest.mark.parametrize("suffix, compress", [
    (".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress),
    (".zst", lambda b: zstandard.ZstdCompressor().compress(b)),
])
def test_compressed_text(tmp_path, suffix, compress):
    raw = ("第一篇文章。\r\n还是第一篇。\r\n\r\n第二篇文章。\n").encode("utf-8")
    path = tmp_path / f"news.txt{suffix}"
    path.write_bytes(compress(raw))
    info, docs = read(path)
    assert info.kind == "text" and info.bytes == path.stat().st_size
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [d.text for d in docs] == ["第一篇文章。\n还是第一篇。", "第二篇文章。"]
    assert [d.doc_id for d in docs] == [f"text:news.txt{suffix}#1", f"text:news.txt{suffix}#2"]
    _, lines = read(path, per_line=True)
    assert [d.text for d in lines] == ["第一篇文章。", "还是第一篇。", "第二篇文章。"]


def test_lines_split_across_chunks(monkeypatch, tmp_path):
    monkeypatch.setattr(decoding, "CHUNK", 7)  # "\r\n" and multibyte characters straddle chunks
    path = tmp_path / "a.txt"
    path.write_bytes("甲乙丙丁\r\n戊己\r\r\n\n庚辛壬癸子丑\n".encode("gb18030"))
    info, docs = read(path, per_line=True)
    assert [d.text for d in docs] == ["甲乙丙丁", "戊己", "庚辛壬癸子丑"]


def test_truncated_gzip_keeps_what_was_read(tmp_path, capsys):
    lines = [f"第{i}行文字，内容完整。" for i in range(3000)]
    data = gzip.compress("\n".join(lines).encode("utf-8"))
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(data[: len(data) // 2])
    info, docs = read(path, per_line=True)
    assert 100 < len(docs) < 3000
    assert [d.text for d in docs] == lines[: len(docs)]  # every kept line is complete
    assert len(info.warnings) == 1 and "cut.txt.gz" in info.warnings[0]
    assert "cut.txt.gz" in capsys.readouterr().err


def test_undecodable_byte_offset(tmp_path):
    path = tmp_path / "bad.txt"
    good = ("正常的文字。" * 50).encode("utf-8")
    path.write_bytes(good + b"\xff\xfe" + good)
    with pytest.raises(UserError, match=rf"bad.txt.*offset {len(good)}.*--skip-bad"):
        resolve_sources([str(path)])
    [info] = resolve_sources([str(path)], skip_bad=True)  # 2 bytes in 602 characters: the
    assert not info.skipped and list(iter_documents(info, skip_bad=True)) == []  # line goes
    assert "skipped bad text line in" in info.warnings[0] and "bad.txt line 1:" in info.warnings[0]


@pytest.mark.parametrize("codec, recorded, bad", [
    ("gb18030", "gb18030", b"\xff"), ("big5", "big5", b"\xff"), ("utf-16-le", "utf-16-le", b"\x00\xdc"),
])
def test_undecodable_offset_in_other_encodings(monkeypatch, tmp_path, codec, recorded, bad):
    monkeypatch.setattr(decoding, "CHUNK", 7)  # the bad byte lies far from a chunk start
    good = ("正常文字。\n" * 7).encode(codec)
    path = tmp_path / "bad.txt"
    path.write_bytes(good * 4 + bad + good)
    with pytest.raises(UserError, match=rf"not valid {recorded} text: .* offset {4 * len(good)}\b"):
        resolve_sources([str(path)])


def test_undecodable_after_sniffed_prefix(monkeypatch, tmp_path):
    monkeypatch.setattr(decoding, "SNIFF", 64)
    path = tmp_path / "bad.txt.gz"
    good = ("正常的文字。\n" * 100).encode("utf-8")
    path.write_bytes(gzip.compress(good + b"\xe4\xb8" + b"\n" + good))
    with pytest.raises(UserError, match=rf"offset {len(good)} \(after decompression\)"):
        resolve_sources([str(path)])


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (bytes(range(256)) * 8, "is a binary file"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(200)), "is a binary file"),
    (bytes(range(1, 256)) * 8, "is (a binary file|not text)"),  # no NUL, still not text
    ("Café au lait, très bien. ".encode("cp1252") * 5, "is not text in a supported encoding"),
])
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "x.txt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=rf"x\.txt {message}"):
        resolve_sources([str(path)])
    [info] = resolve_sources([str(path)], skip_bad=True)
    assert info.skipped and re.search(message, info.warnings[0])


def test_not_really_compressed(tmp_path):
    path = tmp_path / "a.txt.gz"
    path.write_text("不是压缩文件", encoding="utf-8")
    with pytest.raises(UserError, match="cannot be decompressed as .gz"):
        resolve_sources([str(path)])


def test_missing_path_and_empty_directory(tmp_path):
    with pytest.raises(UserError, match="not found: .*nope"):
        resolve_sources([str(tmp_path / "nope")])
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "readme.md").write_text("无关")
    with pytest.raises(UserError, match="no usable corpus files"):
        resolve_sources([str(tmp_path / "d")])
    with pytest.raises(UserError, match="no corpus sources"):
        resolve_sources([])


def test_directory_expansion(tmp_path):
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "b.txt").write_text("乙。", encoding="utf-8")
    (root / "sub" / "a.jsonl.gz").write_bytes(gzip.compress('{"text": "甲。"}\n'.encode()))
    (root / "sub" / "skip.md").write_text("不读")
    (root / ".hidden.txt").write_text("不读")
    infos = resolve_sources([str(root), str(root / "b.txt")])  # b.txt named twice: read once
    assert [(i.kind, i.path.split("/")[-1]) for i in infos] == [("text", "b.txt"), ("jsonl", "a.jsonl.gz")]
    docs = [d for i in infos for d in iter_documents(i)]
    assert [(d.doc_id, d.text) for d in docs] == [("text:corpus/b.txt#1", "乙。"),
                                                  ("jsonl:corpus/sub/a.jsonl.gz#1", "甲。")]
    assert json.loads(json.dumps(infos[0].to_json()))["encoding"] == "utf-8"


# -- JSONL ---------------------------------------------------------------------------

def write_jsonl(path, bad_line='{"text": 3}'):
    rows = [json.dumps({"text": "第一条。", "id": "a1", "tags": ["新闻"]}, ensure_ascii=False),
            "", bad_line, json.dumps({"text": "第三条。", "source": "web"}, ensure_ascii=False)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("bad_line", ['{"text": 3}', "{not json", '["text"]', '{"text": "x", "tags": "a"}'])
def test_jsonl_bad_line(tmp_path, bad_line):
    path = write_jsonl(tmp_path / "d.jsonl", bad_line)
    [info] = resolve_sources([str(path)])
    with pytest.raises(UserError, match=r"d\.jsonl line 3.*--skip-bad"):
        list(iter_documents(info))
    [info] = resolve_sources([str(path)])
    docs = list(iter_documents(info, skip_bad=True))
    assert [(d.doc_id, d.text, d.source, d.tags) for d in docs] == [
        ("jsonl:d.jsonl#a1", "第一条。", "jsonl:d.jsonl", ("新闻",)),
        ("jsonl:d.jsonl#4", "第三条。", "web", ())]
    assert len(info.warnings) == 1 and "line 3" in info.warnings[0]


def test_jsonl_text_in_another_field_is_read_with_text_column(tmp_path):
    """--text-column named the field of CSV and Parquet only: a JSONL whose text is in
    "content" failed with it too, and the error's hint (--skip-bad) would skip every line."""
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"content": "第一条。", "id": 7}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    [info] = resolve_sources([str(path)])
    with pytest.raises(UserError, match=r'"text" field \(its keys: content, id\).*--text-column'):
        list(iter_documents(info))
    [info] = resolve_sources([str(path)], text_column="content")
    assert [(d.doc_id, d.text) for d in iter_documents(info, text_column="content")] == [
        ("jsonl:c.jsonl#7", "第一条。")]


def test_source_info_json_fields():
    info = SourceInfo("x", "text", "/x", 1, "0" * 64, "utf-8")
    assert list(info.to_json()) == ["spec", "kind", "path", "bytes", "sha256", "encoding",
                                    "documents", "skipped", "warnings"]


# -- builtin -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def builtin():
    return resolve_sources(["builtin"])


def test_untag_line():
    assert builtin_corpus.untag_line("[中国/ns  政府/n]nt  发表/v  １/２/m  ，/w") == "中国政府发表１/２，"


def test_headline_heuristic():
    lines = ["新年讲话（附图片１张）", "江泽民", "（一九九七年十二月三十一日）", "同胞们：",
             "正文第一段。", "（新华社记者摄）", "第二篇标题", "副标题", "正文。", "第三篇", "正文！"]
    articles = list(builtin_corpus.peoples_daily_articles(iter(lines)))
    assert [a[0] for a in articles] == ["新年讲话（附图片１张）", "第二篇标题", "第三篇"]
    assert articles[0][-1] == "（新华社记者摄）" and articles[1][:2] == ["第二篇标题", "副标题"]


def test_builtin_peoples_daily_slice(builtin):
    info = builtin[0]
    assert info.kind == "builtin" and info.path.endswith("199801.txt") and len(info.sha256) == 64
    docs = list(itertools.islice(iter_documents(info), 500))
    assert docs[0].text.startswith("迈向充满希望的新世纪——一九九八年新年讲话")
    assert {d.source for d in docs} == {"builtin:peoples_daily"}
    assert len({d.doc_id for d in docs}) == 500
    for doc in docs:
        assert "/n" not in doc.text and "/w" not in doc.text and "]nt" not in doc.text
        assert " " not in doc.text and "[" not in doc.text
    assert 100 < sum(len(d.text) for d in docs) / 500 < 2000  # articles, not paragraphs


def test_builtin_reviews_and_reserve(builtin):
    pos, neg = builtin[1], builtin[2]
    reviews = list(iter_documents(pos)) + list(iter_documents(neg))
    assert {d.source for d in reviews} == {"builtin:reviews"}
    assert {d.tags for d in reviews} == {("sentiment",)}
    total = sum(1 for p in (pos, neg) for line in open(p.path, encoding="utf-8") if line.strip())
    reserve = sentiment_reserve()
    assert 0.15 < (total - len(reviews)) / total < 0.25  # ~20% held back
    assert reserve == sentiment_reserve()  # deterministic
    norm = lambda t: " ".join(unicodedata.normalize("NFKC", t).split())  # noqa: E731
    assert not {norm(d.text) for d in reviews} & {norm(e["text"]) for e in reserve}
    assert len({norm(e["text"]) for e in reserve}) == len(reserve)  # deduplicated
    test = sum(e["split"] == "test" for e in reserve)
    assert 0.15 < test / len(reserve) < 0.25
    assert {e["label"] for e in reserve} == {0, 1}
    # the decision is a stable hash (reference: blake2b of the NFKC text), not Python's hash()
    for entry in reserve[:20]:
        digest = hashlib.blake2b(norm(entry["text"]).encode(), digest_size=8, person=b"zhbert-reserve")
        assert int.from_bytes(digest.digest(), "big") / 2**64 < 0.2
        assert is_reserved_review(entry["text"]) and is_reserved_review(" " + entry["text"] + "\n")


def test_an_empty_small_text_file_is_told_to_be_filled(tmp_path):
    """An empty fill-mask --input was told to "re-save it as UTF-8 text"."""
    from zhbert.corpus.decoding import read_small_text

    path = tmp_path / "in.txt"
    path.write_bytes(b"")
    with pytest.raises(UserError, match=r"sentences file .*in\.txt is empty; write its lines into it$"):
        read_small_text(path, "sentences file")
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(UserError, match="re-save it as UTF-8 text"):
        read_small_text(path, "sentences file")
