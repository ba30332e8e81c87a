"""A JSONL corpus line -> a Document: its text in a field (``text``, or --text-column), with
optional ``id``, ``source`` and ``tags``. ``sources`` reads the lines and decides what a
bad one costs (an error, or with --skip-bad a warning); this only says what is wrong."""

from __future__ import annotations

import json

from zhbert.corpus.document import Document
from zhbert.corpus.filetypes import SURROGATES, shown


def parse_jsonl_line(line: str, lineno: int, source: str, field_name: str = "text") -> Document:
    """One JSONL line -> Document (its text in ``field_name``); ValueError says what is wrong."""
    obj = json.loads(line)
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
    doc_id = obj.get("id", lineno)
    if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool):
        raise ValueError('"id" must be a string or an integer')
    src = obj.get("source", source)
    if not isinstance(src, str):
        raise ValueError('"source" must be a string')
    for name, value in ((field_name, obj[field_name]), ("id", doc_id), ("source", src), ("tags", tags)):
        _check_characters(name, value)
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
