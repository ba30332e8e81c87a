"""A corpus file's bytes as text: decompressed in chunks (bounded memory), its encoding
sniffed on a prefix (``corpus.encoding``), decoded strictly or, with --skip-bad, leniently
(each undecodable byte a lone surrogate, so a reader drops only the line or row holding it),
checked in full before any work, and split into lines. ``sources`` reads documents from
these; fill-mask's and probe's small files are read here too (``read_small_text``)."""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import itertools
import re
import unicodedata
from pathlib import Path
from typing import Iterator

from zhbert.corpus.encoding import ALLOWED_CONTROL, DECODE_AS, NotText, guess_encoding
from zhbert.corpus.filetypes import DAMAGE, OPENERS, SURROGATES, open_stream
from zhbert.errors import UserError

CHUNK = 1 << 16       # bytes per read: memory stays bounded whatever the file size
SNIFF = 1 << 16       # decompressed prefix used to detect the encoding
BAD_BYTE_SHARE = 0.01  # undecodable bytes per character above which a file is bad whole


# -- bytes: hashing, decompressing (kinds and compression: corpus.filetypes) -----

def file_hash(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


class Truncated(Exception):
    """The compressed stream ended early; everything before was delivered."""


def chunks(path: Path) -> Iterator[bytes]:
    """Decompressed chunks; raises Truncated after the last readable one."""
    with open_stream(path) as f:  # an error opening the file is not damage: it propagates
        # read1 hands out whatever the decompressor produced so far, so a damaged
        # tail costs only the damaged block
        read = getattr(f, "read1", f.read)
        try:
            while chunk := read(CHUNK):
                yield chunk
        except DAMAGE as exc:
            raise Truncated(f"{type(exc).__name__}: {exc}") from None


def prefix_of(path: Path) -> tuple[bytes, str | None]:
    """The first SNIFF decompressed bytes, and the error if the stream broke before."""
    out = b""
    try:
        for chunk in chunks(path):
            out += chunk
            if len(out) >= SNIFF:
                break
    except Truncated as exc:
        return out, str(exc)
    return out[:SNIFF], None


# -- encodings ---------------------------------------------------------------------

def decoded(path: Path, encoding: str, lenient: bool = False) -> Iterator[str]:
    """Decoded text chunks; NotText names the byte offset of the first undecodable byte.
    ``lenient`` (--skip-bad) hands each undecodable byte on as a lone surrogate instead
    (``surrogateescape``; no decoding makes one otherwise), so the reader can drop the line
    or row that holds it. UTF-16 has no such handler: it stays strict."""
    errors = "surrogateescape" if lenient and not encoding.startswith("utf-16") else "strict"
    decoder = codecs.getincrementaldecoder(DECODE_AS.get(encoding, encoding))(errors)
    offset = 0  # of the next chunk, in decompressed bytes
    for chunk in itertools.chain(chunks(path), [b""]):  # b"": flush
        pending = len(decoder.getstate()[0])  # bytes held back from the previous chunk
        if pending and not chunk:
            raise _ends_within_a_character(pending, offset)
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            where = offset - pending + exc.start
            after = " (after decompression)" if path.suffix.lower() in OPENERS else ""
            raise NotText(f"is not valid {encoding} text: undecodable byte at offset {where}{after}") from None
        offset += len(chunk)
        if text:
            yield text


def _ends_within_a_character(pending: int, size: int) -> Truncated:
    """The file ends with the first bytes of a character and nothing after: a copy cut short
    mid-write, as a .gz cut short is (Truncated: the lines before are kept, with a warning),
    not undecodable bytes (a bad file). The decoder holds back only the start of a valid
    sequence, so this is never a stray byte; a cut at a random byte of UTF-8 Chinese text
    lands inside a character two times in three."""
    last = f"last {pending} bytes, at offset {size - pending:,}, begin" if pending > 1 \
        else f"last byte, at offset {size - 1:,}, begins"
    return Truncated(f"its {last} a character that never ends")


def _check_text(prefix: bytes, encoding: str) -> None:
    """Reject files that decode but are mostly control characters (binary data)."""
    decoder = codecs.getincrementaldecoder(DECODE_AS.get(encoding, encoding))("replace")
    text = decoder.decode(prefix)
    controls = sum(unicodedata.category(c) == "Cc" and c not in ALLOWED_CONTROL for c in text)
    if controls > len(text) // 100:
        raise NotText(f"is a binary file, not text ({controls} control characters in its first "
                      f"{len(text)} characters as {encoding})")


# -- the checks before reading -----------------------------------------------------

def check_file(path: Path, kind: str, skip_bad: bool | None = None) -> str:
    """Raise NotText unless ``path`` is readable as ``kind``; return its encoding. A file with
    a few undecodable bytes (``_stray_bytes``) passes with ``skip_bad``; None: the reader
    has no --skip-bad, and its error does not offer one."""
    prefix, error = prefix_of(path)
    if not prefix and error:  # a plain file failing to read is no decompression problem
        raise NotText(f"cannot be decompressed as {path.suffix} ({error})" if path.suffix in OPENERS
                      else f"cannot be read ({error})")
    if not prefix.strip():
        raise NotText("is empty")
    if kind == "wiki":
        if b"<mediawiki" not in prefix[:4096]:
            raise NotText("is not a MediaWiki XML dump (no <mediawiki> element at its start)")
        return "utf-8"  # XML declares its own encoding; dumps are UTF-8
    encoding = guess_encoding(prefix)
    _check_text(prefix, encoding)
    with contextlib.suppress(Truncated):  # reported (once) when the documents are read
        try:
            for _ in decoded(path, encoding):  # a full pass: bad bytes are found before any work
                pass
        except NotText as exc:
            if skip_bad is None:
                raise
            _stray_bytes(path, encoding, exc, skip_bad)
    return encoding


def _stray_bytes(path: Path, encoding: str, exc: NotText, skip_bad: bool) -> None:
    """Pass a file whose undecodable bytes are few (a Word quote in cp1252, a damaged
    sector) when --skip-bad will drop the lines or rows holding them; otherwise raise.
    More than BAD_BYTE_SHARE of its characters: the file is not in ``encoding`` at all
    (GBK read as UTF-8 fails on nearly every hanzi), and it stays bad as a whole."""
    if encoding.startswith("utf-16"):  # no surrogateescape for UTF-16: read strictly
        raise exc
    bad = chars = 0
    with contextlib.suppress(Truncated):
        for text in decoded(path, encoding, lenient=True):
            bad += len(SURROGATES.findall(text))
            chars += len(text)
    if bad > BAD_BYTE_SHARE * chars:
        raise exc
    if not skip_bad:
        raise NotText(f"{exc} ({bad:,} such byte{'s' * (bad > 1)} in {chars:,} characters)",
                      fix="fix them, or pass --skip-bad to skip only the lines (or rows) that hold them")


def read_small_text(path: str | Path, what: str) -> str:
    """A small text file (fill-mask sentences, a probe task) read as a corpus file is:
    UTF-8, GB18030/GBK, Big5 or UTF-16, plain or compressed, checked by ``check_file``.
    Every failure is a UserError naming ``what`` and the file."""
    path = Path(path)
    try:
        return "".join(decoded(path, check_file(path, "text")))
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except NotText as exc:  # an empty file is no encoding problem
        fix = "write its lines into it" if str(exc) == "is empty" else "re-save it as UTF-8 text"
        raise UserError(f"{what} {path} {exc}" + ("" if exc.fix else f"; {fix}")) from None
    except Truncated as exc:
        raise UserError(f"{what} {path} is cut short ({exc}); recreate it") from None


# -- lines -------------------------------------------------------------------------

_NEWLINE = re.compile(r"\r\n|\r|\n")


class Unterminated(str):
    """The last line of a file that ends without a newline: whole, or cut short mid-write.
    A JSON Lines reader tells which (``jsonl.parse_jsonl_line``); to everything else it is
    the str it is (str's methods and ``+`` return plain str)."""


def lines_of(texts: Iterator[str]) -> Iterator[str]:
    """Split decoded chunks into lines (any newline convention); a last line without a
    newline is an ``Unterminated``."""
    pending = ""
    for text in texts:
        pending += text
        hold = 1 if pending.endswith("\r") else 0  # may be the first half of "\r\n"
        *lines, last = _NEWLINE.split(pending[:len(pending) - hold])
        pending = last + pending[len(pending) - hold:]
        yield from lines
    # pending holds no newline but a "\r" held back; a stream that raised Truncated above
    # dropped its unterminated last line
    if pending.endswith("\r"):
        yield pending[:-1]
    elif pending:
        yield Unterminated(pending)
