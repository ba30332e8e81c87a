"""MediaWiki dumps: stream pages out of an XML dump, turn wikitext into plain text.

Reading and converting are split on purpose. ``iter_wiki_pages`` only walks the
XML (cheap, sequential, one process) and hands out raw wikitext; the markup
parser (``wikitext_to_text``) is the expensive part and runs later in the
cleaning worker processes.
"""

from __future__ import annotations

import functools
import re
from typing import BinaryIO, Callable, Iterator
from xml.etree.ElementTree import ParseError

import mwparserfromhell
import mwxml
from mwxml.element_iterator import ElementIterator
from mwxml.errors import MalformedXML

from zhbert.corpus import languages
from zhbert.corpus.document import Document

# -- language variants: -{ ... }- ------------------------------------------------

# Which variant of -{zh-cn:..; zh-tw:..}- we keep: the corpus is simplified Chinese first.
VARIANT_PREFERENCE = ("zh-cn", "zh-hans", "zh", "zh-sg", "zh-my", "zh-hant", "zh-tw", "zh-hk", "zh-mo")
_INNERMOST_VARIANT = re.compile(r"-\{((?:(?!-\{|\}-).)*)\}-", re.S)
_FLAGS = re.compile(r"^\s*([A-Za-z\-;\s]*)\|(.*)$", re.S)
# a new "code:" entry starts after ";" (optionally "source=>code:" for one-way rules)
_VARIANT_SPLIT = re.compile(r";\s*(?=(?:[^;]*=>)?\s*zh(?:-[a-z]+)?\s*:)")
_VARIANT_ENTRY = re.compile(r"^\s*(?:[^;]*=>)?\s*(zh(?:-[a-z]+)?)\s*:(.*)$", re.S)


def _pick_variant(body: str) -> str:
    """`zh-cn:中文; zh-tw:中文;` -> the preferred variant; plain text -> itself."""
    entries = {}
    for part in _VARIANT_SPLIT.split(body):
        m = _VARIANT_ENTRY.match(part)
        if m is None:  # not a variant table (e.g. -{程序}-): the text itself
            return body
        entries.setdefault(m.group(1).lower(), m.group(2).strip().rstrip(";").strip())
    for code in VARIANT_PREFERENCE:
        if code in entries:
            return entries[code]
    return next(iter(entries.values()), "")


def _resolve_variant(match: re.Match) -> str:
    content = match.group(1)
    flags_match = _FLAGS.match(content)
    if flags_match is None:
        return _pick_variant(content)
    flags = {f.strip() for f in flags_match.group(1).split(";") if f.strip()}
    body = flags_match.group(2)
    # H (hidden rule), T (title), D (description), - (remove rule): output nothing here
    if flags & {"H", "T", "D", "-"}:
        return ""
    if "R" in flags:  # raw: shown as written
        return body
    return _pick_variant(body)  # A (rule + show), language-code flags, ...


def resolve_variants(wikitext: str) -> str:
    """Replace every -{ ... }- block (innermost first, so nesting works)."""
    while True:
        new = _INNERMOST_VARIANT.sub(_resolve_variant, wikitext)
        if new == wikitext:
            return new
        wikitext = new


# -- wikitext -> plain text --------------------------------------------------------

# Namespace and template names differ per wiki: corpus.languages holds each language's
# (category and file namespaces, disambiguation templates and categories).
# tags whose content is not prose
DROP_TAGS = {"ref", "references", "table", "gallery", "math", "chem", "ce", "score", "timeline",
             "imagemap", "syntaxhighlight", "source", "pre", "code", "graph", "mapframe",
             "templatedata", "inputbox", "categorytree", "noinclude", "includeonly", "poem"}
# ":{|" (an indented table) is common; the parser only knows tables at line start
_INDENTED_TABLE = re.compile(r"^[:*#;]+[ \t]*(?=\{\|)", re.M)
_INTERWIKI = re.compile(r"^[a-z]{2,3}(?:-[a-z]+)*:", re.I)
_MAGIC_WORD = re.compile(r"__[A-Z_]+__")
# unbalanced markup the parser left as text; brackets emptied by removed templates
_LEFTOVER = re.compile(r"\{\{|\}\}|\[\[|\]\]|-\{|\}-|\{\||\|\}|<[^>\n]*>|'{2,}|（[\s，、；]*）|\(\s*\)")


def _prefix(title: str) -> str:
    """'Category:X' -> 'category' (the namespace part, normalised), '' if none."""
    head, sep, _ = title.strip().lstrip(":").partition(":")
    return head.strip().lower().replace("_", " ") if sep else ""


@functools.cache
def _conventions(language: str) -> tuple[frozenset, frozenset, frozenset, frozenset]:
    """(category prefixes, file prefixes, disambiguation templates, disambiguation categories)."""
    lang = languages.get(language)
    return (frozenset(lang.wiki_category), frozenset(lang.wiki_file),
            frozenset(lang.wiki_disambig_templates), frozenset(lang.wiki_disambig_categories))


def _categories(code, category_prefixes: frozenset) -> list[str]:
    cats = []
    for link in code.filter_wikilinks():
        title = str(link.title).strip()
        if not title.startswith(":") and _prefix(title) in category_prefixes:
            name = title.partition(":")[2].strip().replace("_", " ")
            if name and name not in cats:
                cats.append(name)
    return cats


def _is_disambiguation(code, categories: list[str], language: str) -> bool:
    _, _, templates, disambig_categories = _conventions(language)
    names = {str(t.name).strip().lower().replace("_", " ") for t in code.filter_templates()}
    return bool(names & templates) or any(c.lower() in disambig_categories for c in categories)


def _droppable(node, link_prefixes: frozenset) -> bool:
    """Nodes that carry no prose: templates, refs/tables/..., file and category links."""
    if isinstance(node, mwparserfromhell.nodes.Template):
        return True
    if isinstance(node, mwparserfromhell.nodes.Tag):
        return str(node.tag).strip().lower() in DROP_TAGS
    if isinstance(node, mwparserfromhell.nodes.Wikilink):
        title = str(node.title).strip()
        if title.startswith(":"):
            return False  # [[:Category:X]] is an ordinary link
        return _prefix(title) in link_prefixes or bool(_INTERWIKI.match(title))
    return False


@functools.cache
def _text_templates(language: str) -> dict[str, tuple[int, ...]]:
    return dict(languages.get(language).wiki_text_templates)


def _template_text(node, shown: tuple[int, ...], language: str) -> str:
    """The positional parameters ``shown`` of a template, joined by a space, their own
    markup handled first (a template inside a kept parameter)."""
    values = []
    for i in shown:
        if node.has(str(i)):
            value = node.get(str(i)).value
            _remove_nodes(value, language)
            values.append(str(value).strip())
    return " ".join(v for v in values if v)


def _remove_nodes(code, language: str) -> None:
    categories, files, _, _ = _conventions(language)
    keep = _text_templates(language)
    # filter() yields parents before children; a child of a removed parent is gone already
    for node in code.filter(recursive=True, matches=None):
        if keep and isinstance(node, mwparserfromhell.nodes.Template):
            shown = keep.get(str(node.name).strip().lower().replace("_", " "))
            if shown:
                try:
                    code.replace(node, _template_text(node, shown, language))
                except ValueError:
                    pass
                continue
        if _droppable(node, categories | files):
            try:
                code.remove(node)
            except ValueError:
                pass


def wikitext_to_text(wikitext: str, language: str = languages.DEFAULT
                     ) -> tuple[str, tuple[str, ...]] | None:
    """Plain text and category names of one article; None for a disambiguation page.

    Headings stay as their own lines, links become their labels, and every piece
    of markup (templates, refs, tables, files, HTML, variant rules) disappears.
    ``language`` picks the wiki's namespace and template names (corpus.languages);
    -{ }- variant rules exist only on the Chinese wiki.
    """
    if languages.get(language).opencc:
        wikitext = resolve_variants(wikitext)
    code = mwparserfromhell.parse(_INDENTED_TABLE.sub("", wikitext))
    categories = _categories(code, _conventions(language)[0])
    if _is_disambiguation(code, categories, language):
        return None
    _remove_nodes(code, language)
    text = code.strip_code(normalize=True, collapse=True)
    text = _LEFTOVER.sub("", _MAGIC_WORD.sub("", text))
    lines = (line.strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line), tuple(categories)


# -- reading a dump ----------------------------------------------------------------

# What a damaged stream raises: malformed/truncated XML, or a truncated compressed file.
DAMAGE = (ParseError, MalformedXML, EOFError, OSError, ValueError)


def iter_wiki_pages(stream: BinaryIO, name: str, warn: Callable[[str], None],
                    extra_damage: tuple[type[BaseException], ...] = ()) -> Iterator[Document]:
    """Articles (namespace 0, no redirects) of a dump as raw-wikitext Documents.

    A truncated or malformed dump keeps every complete page; then ``warn`` gets
    one message naming the file and the last good page.
    """
    last_title = None
    try:
        root = ElementIterator.from_file(stream)
        if root.tag != "mediawiki":
            raise MalformedXML(f"the root element is <{root.tag}>, not <mediawiki>")
        for page in mwxml.Dump.from_element(root).pages:
            # drain the revisions first: a page cut mid-text raises here, before we yield it
            texts = [rev.text for rev in page]
            last_title = page.title
            # mwxml empties each finished <page> but leaves it on the root (~80 B a page,
            # ~110 MB for all of zh.wikipedia): detach them, as iterparse loops do
            root.element.clear()
            if page.namespace != 0 or page.redirect or not texts or not texts[-1]:
                continue
            yield Document(doc_id=f"wiki:{page.id}", text=texts[-1], source=f"wiki:{name}",
                           markup="wikitext")
    except DAMAGE + extra_damage as exc:
        after = f"after page {last_title!r}" if last_title else "before the first page"
        warn(f"{name}: dump is truncated or malformed ({type(exc).__name__}: "
             f"{str(exc)[:120]}); kept the complete pages, stopped {after}")
