"""Reading JSON Lines input (plain or gzip) into documents, and every bad line into a reason.

One document a line: ``id`` (or BEIR's ``_id``), ``text``, optional ``title``
(embedded as ``title + " " + text``) and optional ``metadata`` (an object). A line
that cannot become a document is reported with its line number; every other
line is read. No bytes a file holds make the reader raise: a file that breaks off
part-way (a cut gzip stream, an I/O error) ends in one rejection after the lines
before the break. Only a file that cannot be opened at all stops the read.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from embedq.api.ingest.metadata import MAX_DEPTH, lone_surrogate, metadata_problem
from embedq.errors import PermanentError
from embedq.jobs.contracts import Document

# Longest text accepted, in characters; longer documents fail alone with a reason.
MAX_TEXT_CHARS = 8 * 2**20

# Longest line, in bytes with its newline: room for a text at the limit, escaped, and its
# metadata. A longer line is rejected unparsed, and never held whole in memory.
MAX_LINE_BYTES = 64 * 2**20

GZIP_MAGIC = b"\x1f\x8b"

# What a file that breaks off part-way raises: a cut or corrupt gzip stream, an I/O error.
READ_ERRORS = (OSError, EOFError, zlib.error)

_SKIP_BYTES = 2**20  # read at a time through the rest of an overlong line
_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class UnreadableInputError(PermanentError):
    """An input file cannot be opened or is not text at all."""


@dataclass(frozen=True)
class Rejected:
    """A line that did not become a document, and why (its line number where it has one)."""

    line: int | None
    reason: str
    doc_id: str | None = None


def read_documents(path: Path, *, seen: set[str] | None = None) -> Iterator[Document | Rejected]:
    """Documents and rejections of one file, in file order; duplicate ids are rejected.

    Pass the same ``seen`` set for every file of a job, so ids are unique across all of them.
    """
    seen = set() if seen is None else seen
    for line in readable_lines(path):
        if isinstance(line, Rejected):
            yield line
            continue
        number, raw = line
        where = f"line {number} of {_file_name(path)}"
        yield once_per_id(parse_line(raw, number), seen, number=number, where=where)


class HasId(Protocol):
    @property
    def id(self) -> str: ...


Item = TypeVar("Item", bound=HasId)


def once_per_id(
    outcome: Item | Rejected, seen: set[str], *, number: int, where: str, label: str = "id"
) -> Item | Rejected:
    """``outcome``, or its rejection when its id was seen before (a new id is remembered)."""
    if isinstance(outcome, Rejected):
        return outcome
    if outcome.id in seen:
        return Rejected(number, f"{where}: duplicate {label} {outcome.id!r}", outcome.id)
    seen.add(outcome.id)
    return outcome


def readable_lines(path: Path) -> Iterator[tuple[int, bytes] | Rejected]:
    """Each non-blank line with its number; then, if the file breaks off part-way, why.

    Nothing after a break is read: the stream cannot be trusted past it.
    """
    with _open(path) as stream:
        number = 0
        try:
            for raw in _lines(stream):
                number += 1
                if raw.strip():
                    yield number, raw
        except READ_ERRORS as error:
            what = getattr(error, "strerror", None) or str(error) or type(error).__name__
            reason = f"{_file_name(path)}: unreadable after line {number}: {what}"
            yield Rejected(number + 1, reason)


def _lines(stream: io.BufferedIOBase) -> Iterator[bytes]:
    """Each line; one over ``MAX_LINE_BYTES`` comes cut to one byte more, its rest skipped."""
    while line := stream.readline(MAX_LINE_BYTES + 1):
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := stream.readline(_SKIP_BYTES)) and not rest.endswith(b"\n"):
                pass
        yield line


def parse_line(raw: bytes, number: int) -> Document | Rejected:
    row = parse_row(raw, number)
    return row if isinstance(row, Rejected) else _document(row, number)


def parse_row(raw: bytes, number: int) -> dict[str, Any] | Rejected:
    """The JSON object on one line, or why there is none; never raises."""
    if len(raw) > MAX_LINE_BYTES:
        return Rejected(number, f"line {number} is longer than the {MAX_LINE_BYTES:,} bytes read")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return Rejected(number, f"line {number} is not valid UTF-8 (byte {error.start})")
    try:
        row = json.loads(text)
    except json.JSONDecodeError as error:
        return Rejected(number, f"line {number} is not JSON: {error.msg} at column {error.colno}")
    except RecursionError:
        depth = _nesting(text)
        reason = f"line {number} is nested {depth:,} levels deep, too deep to read"
        return Rejected(number, f"{reason} (metadata may nest {MAX_DEPTH})")
    except ValueError as error:  # an integer of more than 4,300 digits, say
        reason = str(error).split(":", 1)[0]
        return Rejected(number, f"line {number} is not JSON that can be read: {reason}")
    if not isinstance(row, dict):
        return Rejected(number, f"line {number} is not a JSON object")
    return row


def _document(row: dict[str, Any], number: int) -> Document | Rejected:
    return document_from(row, number, where=f"line {number}")


def document_from(row: dict[str, Any], number: int, *, where: str) -> Document | Rejected:
    """The document in one parsed row, or why it is not one (``where`` names the row)."""
    raw_id = row.get("id", row.get("_id"))
    if raw_id is None or isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        return Rejected(number, f"{where} has no usable id (a string or an integer)")
    doc_id = str(raw_id)
    problem = _id_problem(doc_id)
    if problem is not None:  # the id itself is not kept: it could not be stored either
        return Rejected(number, f"{where}: {problem}")
    text, title, metadata = row.get("text"), row.get("title"), row.get("metadata")
    problem = _text_problem(text, title) or _metadata_problem(metadata)
    if problem is not None:
        return Rejected(number, f"{where}: {problem}", doc_id)
    full = f"{title} {text}" if title else str(text)
    return Document(doc_id, full, metadata)


def _id_problem(doc_id: str) -> str | None:
    if "\x00" in doc_id:  # no database text column takes one
        return "the id holds a NUL character"
    at = lone_surrogate(doc_id)
    if at is not None:
        return f"the id holds a lone surrogate at character {at}, not Unicode"
    return None


def _metadata_problem(metadata: object) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        return "metadata must be an object"
    return metadata_problem(metadata)


def _text_problem(text: object, title: object) -> str | None:
    if text is None:
        return "no text"
    if not isinstance(text, str):
        return f"text must be a string, not {type(text).__name__}"
    if title is not None and not isinstance(title, str):
        return f"title must be a string, not {type(title).__name__}"
    if not text.strip() and not (title or "").strip():
        return "text is empty"
    if len(text) > MAX_TEXT_CHARS:
        return f"text has {len(text):,} characters, more than the {MAX_TEXT_CHARS:,} accepted"
    for name, value in (("text", text), ("title", title or "")):
        at = lone_surrogate(value)
        if at is not None:  # UTF-8 cannot encode one: neither the ledger nor Qdrant takes it
            return f"{name} holds a lone surrogate at character {at}, not Unicode"
    return None


@contextmanager
def _open(path: Path) -> Iterator[io.BufferedIOBase]:
    """Binary lines, gunzipped when the file is gzip (by its magic bytes, not its name).

    The file is opened once and its first bytes peeked at, so a pipe reads like a file.
    """
    try:
        handle = path.open("rb")
    except OSError as error:
        raise UnreadableInputError(f"cannot read {path}: {error.strerror or error}") from error
    with handle:
        try:
            head = handle.peek(len(GZIP_MAGIC))[: len(GZIP_MAGIC)]
        except OSError:
            head = b""  # reading it again fails too, and ends the file in a rejection
        # a pipe may offer one byte at first; no JSON line starts with 0x1f anyway
        if not head or not GZIP_MAGIC.startswith(head):
            yield handle
            return
        with gzip.GzipFile(fileobj=handle, mode="rb") as unzipped:
            yield unzipped


def _nesting(text: str) -> int:
    """How deep the objects and lists of a JSON text nest (brackets inside strings aside)."""
    depth, deepest = 0, 0
    for token in _BRACKETS.finditer(text):
        mark = token.group()
        if mark in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif mark in ("]", "}"):
            depth -= 1
    return deepest


def _file_name(path: Path) -> str:
    # a name of undecodable bytes holds surrogates, which no stored reason may
    return path.name.encode("utf-8", "backslashreplace").decode("utf-8")
