"""Reading JSON Lines input (plain or gzip) into documents, and every bad line into a reason.

One document a line: ``id`` (or BEIR's ``_id``), ``text``, optional ``title``
(embedded as ``title + " " + text``) and optional ``metadata`` (an object). A line
that cannot become a document is reported with its line number; every other
line is read. Only a file that cannot be opened at all stops the read.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from embedq.errors import PermanentError

# Longest text accepted, in characters; longer documents fail alone with a reason.
MAX_TEXT_CHARS = 8 * 2**20


class UnreadableInputError(PermanentError):
    """An input file cannot be opened or is not text at all."""


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    metadata: dict[str, Any] | None = None

    def as_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"id": self.id, "text": self.text}
        if self.metadata is not None:
            payload["metadata"] = self.metadata
        return payload


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
    for number, raw in read_lines(path):
        where = f"line {number} of {path.name}"
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


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Each non-blank line of a file (gunzipped if need be) with its line number."""
    with _open(path) as lines:
        for number, raw in enumerate(lines, start=1):
            if raw.strip():
                yield number, raw


def parse_line(raw: bytes, number: int) -> Document | Rejected:
    row = parse_row(raw, number)
    return row if isinstance(row, Rejected) else _document(row, number)


def parse_row(raw: bytes, number: int) -> dict[str, Any] | Rejected:
    """The JSON object on one line, or why there is none."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return Rejected(number, f"line {number} is not valid UTF-8 (byte {error.start})")
    try:
        row = json.loads(text)
    except json.JSONDecodeError as error:
        return Rejected(number, f"line {number} is not JSON: {error.msg} at column {error.colno}")
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
    if "\x00" in doc_id:  # no database text column takes one
        return Rejected(number, f"{where}: the id holds a NUL character")
    text, title = row.get("text"), row.get("title")
    problem = _text_problem(text, title)
    if problem is not None:
        return Rejected(number, f"{where}: {problem}", doc_id)
    metadata = row.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return Rejected(number, f"{where}: metadata must be an object", doc_id)
    full = f"{title} {text}" if title else str(text)
    return Document(doc_id, full, metadata)


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
    return None


def _open(path: Path) -> io.BufferedIOBase:
    """Binary lines, gunzipped when the file is gzip (by its magic bytes, not its name)."""
    try:
        with path.open("rb") as probe:
            magic = probe.read(2)
        if magic == b"\x1f\x8b":
            return gzip.GzipFile(path, "rb")
        return path.open("rb")
    except OSError as error:
        raise UnreadableInputError(f"cannot read {path}: {error.strerror or error}") from error
