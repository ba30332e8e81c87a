"""The unit every source yields and every later corpus stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Document:
    """One raw document as read from a source, before cleaning.

    ``text`` is the document's text with paragraphs separated by newlines.
    ``source`` names where it came from (e.g. ``builtin:peoples_daily``,
    ``builtin:reviews``, ``wiki:zhwiki-latest.xml.bz2``, or a file path);
    ``doc_id`` is stable across runs (used for the split hash and dedup
    reporting); ``tags`` are domain tags (Wikipedia categories, or a label).
    ``markup`` is "plain" or "wikitext": wikitext is converted to plain text in
    the (parallel) cleaning workers, not in the reader, because the markup
    parser is the expensive part of reading a dump.
    """

    doc_id: str
    text: str
    source: str
    tags: tuple[str, ...] = field(default=())
    markup: str = "plain"
