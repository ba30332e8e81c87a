"""JSON corpus files -> Documents: JSON Lines (an object per line) and JSON arrays of
objects (WuDaoCorpora's shape, streamed an item at a time from ijson's events, so memory
stays a document's whatever the file). Each object holds its text in a field (``text``, or
--text-column), with optional ``id``, ``source`` and ``tags``. ``sources`` reads the file
and decides what a bad line or item costs (an error, or with --skip-bad a warning); this
says what is wrong."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any, BinaryIO, Callable, Iterator

from zhbert.corpus.decoding import Truncated, Unterminated
from zhbert.corpus.document import Document
from zhbert.corpus.filetypes import SURROGATES, shown
from zhbert.fileio import json_type

# stands for an undecodable byte in the UTF-8 handed to ijson (``Utf8Stream``): a Unicode
# noncharacter, reserved for a program's internal use, so never text a corpus holds
UNDECODABLE = "\ufdd0"
_CONTINUATION = bytes(range(0x80, 0xC0))  # UTF-8's bytes after a character's first
# An item or JSONL line nested deeper is bad, passed over without being built: one limit and
# one message for both (``_items``). A document is a few levels deep. ijson itself has no
# limit, and its items() and parse() carry a path as long as the depth with every event:
# 40,000 levels cost 12.5 s (items, in an array) or 7.3 GB (parse, one object alone;
# benchmarks/RESULTS.md, "Deeply nested JSON"); its basic_parse carries none.
MAX_DEPTH = 1000
_OPENS, _CLOSES = ("start_map", "start_array"), ("end_map", "end_array")


def not_json_constant(name: str) -> str:
    """Why a .json stops at a NaN, Infinity or -Infinity. JSON has no such values, but
    json.dumps writes a float nan as NaN unless allow_nan=False, and a JSONL line is read
    with them, as json.loads reads it (a NaN in some score beside the text is no reason to
    lose the line). ijson, which streams a .json, stops at one, and teaching it them means
    reaching into its lexer (it splits "NaN" into "N", "a", "N"): neither cheap nor safe
    across its versions; so that error names the value and the fix."""
    return (f"holds {name}, which is no JSON value (json.dumps writes it for a float NaN "
            "or infinity unless allow_nan=False); write null instead")


def parse_jsonl_line(line: str, lineno: int, source: str, field_name: str = "text") -> Document:
    """One JSONL line -> Document (its text in ``field_name``); ValueError says what is wrong.
    LineCut if it is the file's last line, without a newline, and its JSON ends early."""
    try:
        obj = _line_value(line)
    except ValueError:
        if isinstance(line, Unterminated) and _cut_short(line):
            raise LineCut(f"looks cut short at line {lineno:,}: the file ends there, without a "
                          "newline, in the middle of the line's JSON") from None
        raise
    return document_from(obj, lineno, source, field_name)


def _line_value(line: str) -> Any:
    """The JSON value of a line, nested no deeper than MAX_DEPTH. json's C decoder counts
    each level against Python's recursion limit: before 3.12, with the limit at its 1,000,
    it gives up (RecursionError) a little short of MAX_DEPTH (~990 levels, less from deep in
    a call stack), and such a line is parsed as a .json item is. Elsewhere it may go deeper:
    a parsed value that could be (more brackets than MAX_DEPTH, strings included) has its
    depth counted. Parsed by json.loads either way, which reads NaN and 1e400 as Python does
    (an earlier shortcut sent wiki text with many [[links]] to ijson, which refuses them)."""
    if line.startswith("\ufeff"):
        return json.loads(line)  # json.loads' own error: "Unexpected UTF-8 BOM"
    try:
        value = json.loads(line)
    except RecursionError:
        return _deep_value(line)
    if len(line) > 2 * MAX_DEPTH and line.count("[") + line.count("{") > MAX_DEPTH \
            and _depth(value) > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH:,} levels deep")
    return value


def _depth(value: Any) -> int:
    """How deeply a parsed JSON value nests (a list or dict is one level), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            deepest = max(deepest, d)
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def _deep_value(line: str) -> Any:
    """A JSONL line's value read as a .json item is (``_items``): MAX_DEPTH and its message."""
    import ijson

    events = ijson.get_backend("python").basic_parse(Utf8Stream(iter([line])), use_float=True)
    try:
        [(obj, why)] = _items(events, False, [0])  # ijson raises on a second value
    except (ijson.JSONError, ValueError) as exc:
        why = _ijson_why(exc, line)
        raise ValueError(f"it {why}" if why.startswith("holds ") else why) from None
    if why:
        raise ValueError(why)
    return obj


def _cut_short(line: str) -> bool:
    """Whether a line's JSON ends before its value does (what a cut-short .json is told by),
    rather than being wrong where it stops."""
    import ijson

    try:
        for _ in ijson.get_backend("python").basic_parse(Utf8Stream(iter([line]))):
            pass
    except (ijson.JSONError, ValueError) as exc:
        return _incomplete(exc)
    return False


def _incomplete(exc: Exception) -> bool:
    """Whether ijson's error says its input ended early (not "Incomplete" as in a bad escape)."""
    import ijson

    return isinstance(exc, ijson.IncompleteJSONError) and _ijson_why(exc, "").startswith("Incomplete")


def _ijson_why(exc: Exception, text: str, start: int = 0) -> str:
    """ijson's error, its first line as text; a NaN or Infinity it stopped at (``text``: what
    it read from character ``start`` on; it names the lexeme only, "N", "I" or "-") told as
    ``not_json_constant`` tells it."""
    why = exc.args[0] if exc.args else exc
    why = why.decode("utf-8", "replace") if isinstance(why, bytes) else str(why)
    why = why.strip().splitlines()[0].strip() if why.strip() else type(exc).__name__
    if (at := re.fullmatch(r"Unexpected symbol '.*' at (\d+)", why)) and int(at[1]) >= start:
        if constant := re.match(r"-?(NaN|Infinity)", text[int(at[1]) - start:]):
            return not_json_constant(constant[0])
    return why


def document_from(obj: Any, number: int, source: str, field_name: str = "text") -> Document:
    """A parsed JSON object -> Document; ``number`` (its line or item) is its id unless it
    has one. ValueError says what is wrong."""
    if isinstance(obj, dict) and field_name in obj and not isinstance(obj[field_name], str):
        # the field is there: naming another one with --text-column is not the fix
        raise ValueError(f'the "{field_name}" value is {json_type(obj[field_name])}, not a string')
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

    count, has_field, depth = 0, False, 0
    try:
        for event, value in ijson.get_backend("python").basic_parse(stream, multiple_values=True):
            if depth == 0:
                count += 1
                if count == 2:
                    break
            elif depth == 1 and event == "map_key":
                has_field = has_field or (count == 1 and value == field_name)
            depth += (event in _OPENS) - (event in _CLOSES)
    except (ijson.JSONError, ValueError):  # ValueError: a string json will not decode
        return (count, has_field) if count == 2 else (0, False)
    return count, has_field


class ArrayDamage(Exception):
    """The array stopped parsing (a syntax error, a cut-short file): every item before it
    was delivered. The message completes "<path> ..." and says after which item."""


class ArrayCut(ArrayDamage, Truncated):
    """The JSON ended before its array or value did (a cut-short file, plain or compressed:
    nothing follows to be lost): kept, as a cut-short .jsonl.gz or .txt.gz is."""


class LineCut(Truncated):
    """A JSON Lines file's last line ends, without a newline, before its JSON does: a copy
    cut short mid-write (nothing follows to be lost), kept as a cut-short .json is. Not a
    ValueError: no bad line (a bad line before the last, or a last line ending in a newline,
    is one)."""


def array_documents(stream: "Utf8Stream", source: str, field_name: str,
                    bad: Callable[[int, str], None]) -> Iterator[Document]:
    """The documents of a JSON array of objects, streamed an item at a time from
    ``stream``; a bad item goes to ``bad(item number, why)``, which raises or lets the
    reading go on. Stray bytes between two items (``_stray``) are a bad item of their own,
    and the reading goes on at the next object. ijson's Python backend, not its C one
    (yajl2_c, ~10x faster to parse): yajl turns a lone high surrogate's escape ("\\ud83d"
    cut from its pair, common in scraped text) into "?" or merges it with the next escape
    into another character, silently, where the Python backend keeps it, and the item is
    then bad on its own (``_check_characters``). Parsing is not what limits prepare (its
    cleaning is)."""
    import ijson

    number = 0  # items read so far
    in_array = stream.first() == b"["  # else the values one after another (`jq '.[]'`)
    while True:
        depth = [0]  # the parse's depth at its last event: where an error stopped it
        events = ijson.get_backend("python").basic_parse(stream, use_float=True, multiple_values=not in_array)
        try:
            for obj, why in _items(events, in_array, depth):
                number += 1
                try:
                    if why:
                        raise ValueError(why)
                    yield document_from(obj, number, source, field_name)
                except ValueError as exc:
                    bad(number, str(exc))
            return
        except (ijson.JSONError, ValueError) as exc:  # ValueError: a raw tab or bad escape in a string
            stray = None if depth[0] != in_array or _cut(exc, stream) else _stray(exc, stream, number, in_array)
            if stray is None:
                raise _damage(exc, stream, number) from None
        number += 1  # the stray bytes: told as a bad item, then a fresh parse from the next object
        bad(number, stray)


def _damage(exc: Exception, stream: "Utf8Stream", number: int) -> ArrayDamage:
    """What stopped the parse after item ``number``: the file cut short, or broken there.
    ijson counts characters from where its parse began, the file's ``stream.base``."""
    why = _ijson_why(exc, *stream.recent())
    why = f"item {number + 1:,} {why}" if why.startswith("holds ") else why  # NaN, Infinity
    if stream.base:
        why = re.sub(r"(?<= at )(\d+)$", lambda m: str(int(m[1]) + stream.base), why)
    message = f"after item {number:,} ({why})"
    if _incomplete(exc) and not stream.ended:  # ijson's word for a stray "n" or "tr", mid-file
        message = f"after item {number:,} (a stray word there, part of true, false or null, is no JSON value)"
    return (ArrayCut(f"its JSON ends {message}") if _cut(exc, stream)
            else ArrayDamage(f"stops parsing as JSON {message}"))


def _cut(exc: Exception, stream: "Utf8Stream") -> bool:
    """The file cut short: ijson out of input at the file's end. It says "Incomplete JSON
    content" for a stray "n" or "tr" mid-file too (a prefix of null or true, as a cut file
    would end), which is damage: kept as a cut, it lost every item after it, with a warning."""
    return _incomplete(exc) and stream.ended


def _stray(exc: Exception, stream: "Utf8Stream", number: int, in_array: bool) -> str | None:
    """Why the bytes where ijson stopped, between two items (a stray \\x01 or letter, as a
    bad disk sector or a hand edit leaves), are skipped, once the stream is resumed at the
    next object (``Utf8Stream.resume``): before this one damaged spot cost every item after
    it. None where they cannot be skipped safely: a missing comma (nothing stray), a quote
    among them (a string's bounds are lost: what follows may be text, not items)."""
    at = re.fullmatch(r"Unexpected symbol .* at (\d+)", str(exc.args[0]) if exc.args else "")
    skipped = at and stream.resume(int(at[1]), "[" if in_array else "", '{]"' if in_array else '{"')
    if not skipped:
        return None
    head, length, offset = skipped
    more = f" ({length:,} characters)" if length > len(head) else ""
    return (f"stray text {head.strip()!r}{more} at character {offset:,}, after item {number:,}, "
            "is no JSON value (remove it; --skip-bad skips it and reads on at the next object)")


def _items(events: Iterator[tuple[str, Any]], in_array: bool,
           kept: list[int]) -> Iterator[tuple[Any, str | None]]:
    """(value, None) for each item of the array (``in_array``) or each top-level value, built
    from basic_parse's events; (None, why) for one nested deeper than MAX_DEPTH, whose events
    are passed over without building anything. ``kept[0]``: the depth after the last event,
    where an error stopped the parse (``_stray`` resumes only between items)."""
    import ijson

    base = int(in_array)  # the array's own level
    depth, builder, too_deep = 0, None, False
    for event, value in events:
        step = (event in _OPENS) - (event in _CLOSES)
        depth += step
        kept[0] = depth
        if in_array and (depth == 0 or depth - step == 0):  # the array's own start and end
            continue
        if builder is None and not too_deep:
            builder = ijson.ObjectBuilder()
        if depth - base > MAX_DEPTH and not too_deep:
            builder, too_deep = None, True
        if builder is not None:
            builder.event(event, value)
        if depth == base:  # the item is whole
            yield (None, f"nested more than {MAX_DEPTH:,} levels deep") if too_deep else (builder.value, None)
            builder, too_deep = None, False


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
        # the last two reads, and the characters decoded in all: where ijson's error points
        # (it counts characters, not bytes), counted back from the end on an error only
        self._recent: list[bytes] = []
        self._chars = 0
        self.base = 0  # the characters before this parse's first (``resume`` starts another)
        self.ended = False  # a read found nothing left: the parse saw the file's end

    def recent(self) -> tuple[str, int]:
        """The text of the last two reads (less a character cut at either end), and the
        character offset it starts at: those decoded, less those from the reads' first
        byte on (counted by the bytes that start one)."""
        data = b"".join(self._recent)
        return (data.decode("utf-8", "ignore"),
                self._chars - len((data + self._buffer).translate(None, _CONTINUATION)))

    def first(self) -> bytes:
        """The first byte that is not whitespace, left to be read."""
        while not self._buffer.strip() and self._fill(len(self._buffer) + 1):
            pass
        return self._buffer.lstrip()[:1]

    def read(self, size: int = -1) -> bytes:
        self._fill(size)
        size = len(self._buffer) if size < 0 else size
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        self.ended = self.ended or (not out and size != 0)
        self._recent = [self._recent[-1], out] if self._recent else [out]
        return out

    def resume(self, at: int, prefix: str, stops: str) -> tuple[str, int, int] | None:
        """Skip the text from character ``at`` of this parse (where ijson stopped) to the
        first of ``stops``, and start the stream again there, behind ``prefix`` (a fresh
        parse: "[" for the rest of an array); (the skipped text's start, its length, the
        file's character it began at). None, the stream left as it was, if nothing would be
        skipped, the text at ``at`` is no longer held (ijson reads ahead two reads at most),
        or the first stop is a quote (a string's bounds lost)."""
        data = b"".join(self._recent) + self._buffer
        start = self._chars - len(data.translate(None, _CONTINUATION))
        text = data.decode("utf-8", "ignore")[at - start:] if at >= start else None
        head, length, texts = "", 0, []  # texts: those read on, pushed back on a failure
        while text is not None and not any(c in text for c in stops):
            head, length = (head + text)[:40], length + len(text)
            texts.append(text := self._next_text())
        stop = min((i for i in map(text.find, stops) if i >= 0), default=-1) if text else -1
        if stop <= 0 and length == 0 or stop < 0 or text[stop] == '"':
            pushed = "".join(t for t in texts if t)  # as if read as ever: for ``recent``
            self._buffer, self._chars = self._buffer + pushed.encode("utf-8"), self._chars + len(pushed)
            return None
        head, length = (head + text[:stop])[:40], length + stop
        self._buffer = (prefix + text[stop:]).encode("utf-8")
        self._recent, self._chars = [], len(prefix) + len(text) - stop
        offset = self.base + at
        self.base = offset + length - len(prefix)
        return head, length, offset

    def _next_text(self) -> str | None:
        """The next chunk of text (an undecodable byte as UNDECODABLE); None at the end, or
        at an error from the chunks (kept in ``error``)."""
        if self.error is not None:
            return None
        try:
            text = next(self._texts, None)
        except Exception as exc:  # noqa: BLE001 - the reader raises it (see above)
            self.error = exc
            return None
        return None if text is None else SURROGATES.sub(UNDECODABLE, text)

    def _fill(self, size: int) -> int:
        """Decode until ``size`` bytes are buffered (all: -1), the text ends or an error comes;
        how many bytes were added."""
        added = 0
        while size < 0 or len(self._buffer) < size:
            text = self._next_text()
            if text is None:
                break
            chunk = text.encode("utf-8")
            self._chars += len(text)  # a character each, UNDECODABLE for a surrogate
            self._buffer += chunk
            added += len(chunk)
        return added
