"""JSON corpus files -> Documents: JSON Lines (an object per line) and JSON arrays of
objects (WuDaoCorpora's shape, streamed an item at a time with ijson, so memory stays a
document's whatever the file). Each object holds its text in a field (``text``, or
--text-column), with optional ``id``, ``source`` and ``tags``. ``sources`` reads the file
and decides what a bad line or item costs (an error, or with --skip-bad a warning); this
says what is wrong."""

from __future__ import annotations

import itertools
import json
from typing import Any, BinaryIO, Callable, Iterator

from zhbert.corpus.document import Document
from zhbert.corpus.filetypes import SURROGATES, shown

# stands for an undecodable byte in the UTF-8 handed to ijson (``Utf8Stream``): a Unicode
# noncharacter, reserved for a program's internal use, so never text a corpus holds
UNDECODABLE = "\ufdd0"


def parse_jsonl_line(line: str, lineno: int, source: str, field_name: str = "text") -> Document:
    """One JSONL line -> Document (its text in ``field_name``); ValueError says what is wrong."""
    try:
        obj = json.loads(line)
    except RecursionError:  # json's C decoder recurses: ~1,000 levels of [[[...]]] in 20 KB
        raise ValueError("nested too deeply to be a document's JSON object") from None
    return document_from(obj, lineno, source, field_name)


def document_from(obj: Any, number: int, source: str, field_name: str = "text") -> Document:
    """A parsed JSON object -> Document; ``number`` (its line or item) is its id unless it
    has one. ValueError says what is wrong."""
    if isinstance(obj, dict) and field_name in obj and not isinstance(obj[field_name], str):
        # the field is there: naming another one with --text-column is not the fix
        raise ValueError(f'the "{field_name}" value is {_json_type(obj[field_name])}, not a string')
    if not isinstance(obj, dict) or not isinstance(obj.get(field_name), str):
        keys = f" (its keys: {', '.join(map(str, list(obj)[:8]))})" if isinstance(obj, dict) else ""
        raise ValueError(f'expected a JSON object with a string "{field_name}" field{keys}; '
                         "name the text's field with --text-column")
    tags = obj.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError('"tags" must be a list of strings')
    doc_id = obj.get("id", number)
    if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool):
        raise ValueError('"id" must be a string or an integer')
    src = obj.get("source", source)
    if not isinstance(src, str):
        raise ValueError('"source" must be a string')
    for name, value in ((field_name, obj[field_name]), ("id", doc_id), ("source", src), ("tags", tags)):
        _check_characters(name, value)
    if UNDECODABLE in obj[field_name]:
        raise ValueError(f'the "{field_name}" value holds undecodable bytes')
    return Document(f"{source}#{doc_id}", obj[field_name], src, tuple(tags))


def _check_characters(name: str, value) -> None:
    """ValueError if a string (or list of strings) holds a lone surrogate: JSON's "\\ud800"
    escape without its other half, common in scraped text, parses to no character, and
    every later step that encodes the text as UTF-8 would fail on it."""
    for text in value if isinstance(value, list) else [value]:
        if isinstance(text, str) and (bad := SURROGATES.search(text)):
            raise ValueError(f'the "{name}" value holds a lone surrogate escape '
                             f"({shown(bad.group())}, half of a UTF-16 pair, at character "
                             f"{bad.start()}), which is no character (remove it, or complete the pair)")


def _json_type(value) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", list: "an array", dict: "an object"}
    return names.get(type(value), type(value).__name__)


# -- .json files: an array of objects, or JSON Lines under another name ------------------

def json_shape(texts: Iterator[str], field_name: str = "text") -> str:
    """What a .json file holds, from its decoded text chunks (read no further than needed):
    "array" (of objects), "lines" (JSON Lines: its first line is a whole object), "values"
    (objects one after another, as `jq '.[]'` prints them), "object" (one object: metadata
    rather than documents, or alone on its only line without ``field_name``) or "other"."""
    head = next(texts, "")
    text = head.lstrip("\ufeff \t\r\n")
    if text.startswith("["):
        return "array"
    if not text.startswith("{"):
        return "other"
    first, newline, rest = text.partition("\n")
    tail = [] if newline else list(itertools.islice(texts, 1))  # is the first line whole?
    if newline or not tail:
        obj = _loads(first)
        if isinstance(obj, dict):
            alone = not rest.strip() and not tail and not any(t.strip() for t in texts)
            return "object" if alone and field_name not in obj else "lines"
    # pretty-printed, or a first line longer than a chunk: one object or several, counted
    # from the parser's events (nothing is built: a one-object file may be large)
    count, has_field = _top_level_values(Utf8Stream(itertools.chain([head], tail, texts)), field_name)
    if count == 1:  # one document (its text in the field), or metadata
        return "values" if has_field else "object"
    return "values" if count else "other"


def _loads(line: str) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def _top_level_values(stream: BinaryIO, field_name: str) -> tuple[int, bool]:
    """How many JSON values the stream holds one after another, up to 2 (0: not JSON), and
    whether the first has the key ``field_name``."""
    import ijson

    count, has_field = 0, False
    try:
        for prefix, event, value in ijson.get_backend("python").parse(stream, multiple_values=True):
            if prefix != "":
                continue
            if event == "map_key":
                has_field = has_field or (count == 1 and value == field_name)
            elif event not in ("end_map", "end_array"):
                count += 1
                if count == 2:
                    break
    except ijson.JSONError:
        return (count, has_field) if count == 2 else (0, False)
    return count, has_field


class ArrayDamage(Exception):
    """The array stopped parsing (a syntax error, a cut-short file): every item before it
    was delivered. The message completes "<path> ..." and says after which item."""


def array_documents(stream: "Utf8Stream", source: str, field_name: str,
                    bad: Callable[[int, str], None]) -> Iterator[Document]:
    """The documents of a JSON array of objects, streamed an item at a time from
    ``stream``; a bad item goes to ``bad(item number, why)``, which raises or lets the
    reading go on. ijson's Python backend, not its C one (yajl2_c, ~10x faster to
    parse): yajl turns a lone high surrogate's escape ("\\ud83d" cut from its pair, common
    in scraped text) into "?" or merges it with the next escape into another character,
    silently, where the Python backend keeps it, and the item is then bad on its own
    (``_check_characters``). Parsing is not what limits prepare (its cleaning is)."""
    import ijson

    number = 0  # items read so far
    # an array's items, or the values one after another (`jq '.[]'`'s output)
    prefix = "item" if stream.first() == b"[" else ""
    try:
        for number, obj in enumerate(ijson.get_backend("python").items(
                stream, prefix, use_float=True, multiple_values=not prefix), 1):
            try:
                yield document_from(obj, number, source, field_name)
            except ValueError as exc:
                bad(number, str(exc))
    except ijson.JSONError as exc:
        why = exc.args[0] if exc.args else exc
        why = why.decode("utf-8", "replace") if isinstance(why, bytes) else str(why)
        raise ArrayDamage(f"stops parsing as JSON after item {number:,} "
                          f"({why.strip().splitlines()[0].strip()})") from None


class Utf8Stream:
    """Decoded text chunks as the UTF-8 bytes ijson reads (a GBK or Big5 .json too); an
    undecodable byte (a lone surrogate from --skip-bad's lenient decoding) becomes
    UNDECODABLE, so the item holding it is bad rather than the whole rest of the file. An
    error from the chunks (a cut-short compressed file) ends the stream once the text
    before it is read, so the items before the damage are kept; it is kept in ``error``
    for the reader to raise (raised inside ijson's generators, it left one to print a
    traceback when it was collected)."""

    def __init__(self, texts: Iterator[str]):
        self._texts, self._buffer = texts, b""
        self.error: Exception | None = None

    def first(self) -> bytes:
        """The first byte that is not whitespace, left to be read."""
        while not self._buffer.strip() and self._fill(len(self._buffer) + 1):
            pass
        return self._buffer.lstrip()[:1]

    def read(self, size: int = -1) -> bytes:
        self._fill(size)
        size = len(self._buffer) if size < 0 else size
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def _fill(self, size: int) -> int:
        """Decode until ``size`` bytes are buffered (all: -1), the text ends or an error comes;
        how many bytes were added."""
        added = 0
        while self.error is None and (size < 0 or len(self._buffer) < size):
            try:
                text = next(self._texts, None)
            except Exception as exc:  # noqa: BLE001 - the reader raises it (see above)
                self.error = exc
                break
            if text is None:
                break
            chunk = SURROGATES.sub(UNDECODABLE, text).encode("utf-8")
            self._buffer += chunk
            added += len(chunk)
        return added
