"""MediaWiki dumps: page streaming, wikitext -> text, variants, damage handling."""

from __future__ import annotations

import gzip
import lzma
from pathlib import Path

import pytest

from fixtures_corpus import ARTICLE, dump_xml, write_multistream_bz2
from zhbert.corpus.sources import iter_documents, resolve_sources
from zhbert.corpus.wiki import resolve_variants, wikitext_to_text

MARKUP = ("{{", "}}", "[[", "]]", "<ref", "-{", "}-", "|}", "{|", "<!--", "__TOC__", "'''", "''",
          "<span", "==")
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "wiki"


def assert_no_markup(text: str) -> None:
    for token in MARKUP:
        assert token not in text, (token, text)


# -- wikitext_to_text ---------------------------------------------------------------

def test_article_text_and_categories():
    text, cats = wikitext_to_text(ARTICLE)
    assert_no_markup(text)
    assert cats == ("数学", "基础科学")
    lines = text.split("\n")
    assert lines[0] == "数学是研究数量、结构以及空间等概念的一门学科。它使用形式逻辑与证明。"
    assert "历史" in lines and "参考文献" in lines  # headings kept as their own lines
    assert "古代的算术与几何" in lines  # list marker gone, -{text}- -> text
    assert "现代的集合论" in lines  # -{A|..}- shows the zh-cn/zh variant
    assert "斜体与标签" in lines
    for gone in ("数学史", "欧几里得", "毕达哥拉斯", "Math.png", "wikitable", "thumb", "200px",
                 "注释", "Mathematics", "信息", "資訊", "Infobox", "画像"):
        assert gone not in text, gone


@pytest.mark.parametrize("wikitext, expected", [
    ("-{zh-cn:信息; zh-tw:資訊;}-", "信息"),
    ("-{zh-tw:資訊;zh-cn:信息;}-", "信息"),
    ("-{zh-hant:視窗; zh-hans:窗口}-", "窗口"),
    ("-{zh-tw:臺灣;zh-hk:香港}-", "臺灣"),
    ("-{zh:中文}-", "中文"),
    ("-{程序}-", "程序"),
    ("-{}-", ""),
    ("-{H|zh-cn:软件;zh-tw:軟體;}-", ""),
    ("-{A|zh:[[甲]];zh-tw:[[乙]];}-", "[[甲]]"),
    ("-{R|zh-cn:原样}-", "zh-cn:原样"),
    ("-{zh-hans;zh-hant|文字}-", "文字"),
    ("外-{zh-cn:内-{程序}-层;zh-tw:內層}-部", "外内程序层部"),
])
def test_variants(wikitext, expected):
    assert resolve_variants(wikitext) == expected


@pytest.mark.parametrize("wikitext", [
    "'''水星'''可以指：\n* [[水星]]\n{{disambig}}",
    "x\n{{Disambig}}", "x {{消歧义}}", "x {{消歧義}}", "x {{dab}}",
    "x\n[[Category:消歧义]]", "x\n[[分類:消歧義]]",
])
def test_disambiguation_pages_are_none(wikitext):
    assert wikitext_to_text(wikitext) is None


def test_links_and_leftovers():
    text, cats = wikitext_to_text("见[[:Category:数学|数学分类]]、[[Wikipedia:帮助|帮助]]和[https://a.org 外链]。"
                                  "<references/>{{bad template\n[[broken link")
    assert text.startswith("见数学分类、帮助和外链。")
    assert cats == ()
    assert_no_markup(text)


# -- reading dumps ------------------------------------------------------------------

def read_dump(path: Path):
    [info] = resolve_sources([str(path)])
    return info, list(iter_documents(info))


@pytest.mark.parametrize("suffix", [".xml", ".xml.gz", ".xml.xz", ".xml.bz2"])
def test_dump_reader_main_namespace_only(tmp_path, suffix):
    data = dump_xml().encode("utf-8")
    path = tmp_path / f"zhwiki{suffix}"
    if suffix == ".xml.bz2":
        write_multistream_bz2(path)
    else:
        path.write_bytes({".xml": lambda d: d, ".xml.gz": gzip.compress,
                          ".xml.xz": lzma.compress}[suffix](data))
    info, docs = read_dump(path)
    assert info.kind == "wiki" and info.warnings == [] and info.documents == 3
    # redirect (14) and non-main namespace (16) skipped; the disambiguation page is
    # only recognised when converted (in the cleaning workers)
    assert [d.doc_id for d in docs] == ["wiki:13", "wiki:15", "wiki:17"]
    assert {d.markup for d in docs} == {"wikitext"}
    assert {d.source for d in docs} == {f"wiki:zhwiki{suffix}"}
    assert docs[0].text == ARTICLE
    assert wikitext_to_text(docs[1].text) is None


def test_truncated_multistream_bz2_keeps_complete_pages(tmp_path, capsys):
    path = write_multistream_bz2(tmp_path / "cut.xml.bz2", truncate_last=120)
    info, docs = read_dump(path)
    assert [d.doc_id for d in docs] == ["wiki:13", "wiki:15"]  # 哲学 (17) was cut
    assert len(info.warnings) == 1
    assert "cut.xml.bz2" in info.warnings[0] and "Wikipedia:关于" in info.warnings[0]
    assert "cut.xml.bz2" in capsys.readouterr().err


def test_malformed_xml_keeps_complete_pages(tmp_path):
    text = dump_xml()
    cut = text.index("<title>哲学</title>")
    path = tmp_path / "bad.xml"
    path.write_text(text[:cut] + "<title>哲学</wrong>", encoding="utf-8")
    info, docs = read_dump(path)
    assert [d.doc_id for d in docs] == ["wiki:13", "wiki:15"]
    assert "bad.xml" in info.warnings[0]


# -- the real excerpts (optional) ----------------------------------------------------

@pytest.mark.skipif(not (REFERENCE / "zhwiki-2018-first33pages.xml").exists(), reason="no shared reference")
def test_real_zhwiki_excerpt():
    info, docs = read_dump(REFERENCE / "zhwiki-2018-first33pages.xml")
    assert info.warnings == [] and len(docs) == 23
    for doc in docs:
        converted = wikitext_to_text(doc.text)
        if converted is not None:
            assert_no_markup(converted[0].replace("==", ""))  # "==" may be prose in formulas
            assert converted[0]


@pytest.mark.skipif(not (REFERENCE / "jawiki-truncated-100k.xml.xz").exists(), reason="no shared reference")
def test_real_truncated_jawiki_excerpt():
    info, docs = read_dump(REFERENCE / "jawiki-truncated-100k.xml.xz")
    assert len(info.warnings) == 1 and "jawiki-truncated-100k.xml.xz" in info.warnings[0]
    assert 150 < len(docs) < 238  # 238 whole pages, minus redirects and other namespaces
    assert all(d.text for d in docs)


def test_dump_reader_memory_does_not_grow_with_pages():
    """mwxml empties each finished <page> but left it attached to the root (~80 B a page):
    the reader detaches them, so reading 6,000 more pages leaves (almost) nothing behind."""
    import io
    import tracemalloc

    from zhbert.corpus.wiki import iter_wiki_pages

    pages = [(i, 0, f"条目{i}", None, f"第{i}个条目的正文。") for i in range(1, 8001)]
    stream = io.BytesIO(dump_xml(pages).encode("utf-8"))
    tracemalloc.start()
    try:
        reader = iter_wiki_pages(stream, "many.xml", warn=print)
        for _ in range(2000):
            next(reader)
        before = tracemalloc.get_traced_memory()[0]
        n = 2000 + sum(1 for _ in reader)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert n == 8000
    assert grown < 100_000, grown  # with the pages left attached: 335 KB (measured)
