"""Small corpus fixtures written by the tests: a MediaWiki dump in the real export schema."""

from __future__ import annotations

import bz2
from pathlib import Path
from xml.sax.saxutils import escape

HEADER = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" \
xsi:schemaLocation="http://www.mediawiki.org/xml/export-0.10/ http://www.mediawiki.org/xml/export-0.10.xsd" \
version="0.10" xml:lang="zh">
  <siteinfo>
    <sitename>Wikipedia</sitename>
    <dbname>zhwiki</dbname>
    <base>https://zh.wikipedia.org/wiki/Wikipedia:%E9%A6%96%E9%A1%B5</base>
    <generator>MediaWiki 1.32.0-wmf.3</generator>
    <case>first-letter</case>
    <namespaces>
      <namespace key="-2" case="first-letter">Media</namespace>
      <namespace key="0" case="first-letter" />
      <namespace key="1" case="first-letter">Talk</namespace>
      <namespace key="4" case="first-letter">Wikipedia</namespace>
      <namespace key="6" case="first-letter">File</namespace>
      <namespace key="10" case="first-letter">Template</namespace>
      <namespace key="14" case="first-letter">Category</namespace>
    </namespaces>
  </siteinfo>
"""
FOOTER = "</mediawiki>\n"

ARTICLE = """{{Infobox 学科|名称=数学|图像=Math.png}}
'''数学'''是研究数量、结构以及空间等概念的一门-{zh-cn:学科; zh-tw:學科;}-<ref name="a">{{cite book|title=数学史}}</ref>。\
它使用[[逻辑|形式逻辑]]与[[证明]]。<ref name="b"/>
-{H|zh-cn:信息;zh-tw:資訊;}-
== 历史 ==
* 古代的-{算术}-与几何
# 现代的-{A|zh:[[集合论]];zh-tw:[[集合論]];}-
{| class="wikitable"
|-
! 年代 !! 事件
|-
| 公元前 || 欧几里得
|}
[[File:Euclid.jpg|thumb|欧几里得[[画像]]]]
[[文件:Pythagoras.png|200px|毕达哥拉斯]]
<!-- 注释不可见 --> __TOC__ ''斜体''与<span>标签</span>
== 参考文献 ==
{{reflist}}
[[Category:数学]]
[[分类:基础科学|排序]]
[[en:Mathematics]]
"""

PAGES = [
    # (id, ns, title, redirect target or None, wikitext)
    (13, 0, "数学", None, ARTICLE),
    (14, 0, "数学学", "数学", "#REDIRECT [[数学]]"),
    (15, 0, "水星 (消歧义)", None, "'''水星'''可以指：\n* [[水星]]\n{{disambig}}"),
    (16, 4, "Wikipedia:关于", None, "这是'''维基百科'''的说明页面。"),
    (17, 0, "哲学", None, "'''哲学'''是研究普遍的、基本问题的学科。\n[[分類:哲学]]"),
]


def page_xml(page_id: int, ns: int, title: str, redirect: str | None, text: str) -> str:
    redirect_tag = f'    <redirect title="{escape(redirect)}" />\n' if redirect else ""
    return f"""  <page>
    <title>{escape(title)}</title>
    <ns>{ns}</ns>
    <id>{page_id}</id>
{redirect_tag}    <revision>
      <id>{page_id * 100}</id>
      <timestamp>2018-01-14T05:10:26Z</timestamp>
      <contributor>
        <username>Tester</username>
        <id>1</id>
      </contributor>
      <model>wikitext</model>
      <format>text/x-wiki</format>
      <text xml:space="preserve" bytes="{len(text.encode())}">{escape(text)}</text>
      <sha1>0000000000000000000000000000000</sha1>
    </revision>
  </page>
"""


def dump_xml(pages=PAGES) -> str:
    return HEADER + "".join(page_xml(*p) for p in pages) + FOOTER


def write_multistream_bz2(path: Path, pages=PAGES, truncate_last: int = 0) -> Path:
    """A .xml.bz2 the way Wikimedia writes multistream dumps: one bz2 stream per part.

    ``truncate_last`` bytes are cut off the end, damaging the last stream(s).
    """
    parts = [HEADER] + [page_xml(*p) for p in pages] + [FOOTER]
    data = b"".join(bz2.compress(part.encode("utf-8")) for part in parts)
    path.write_bytes(data[: len(data) - truncate_last])
    return path
