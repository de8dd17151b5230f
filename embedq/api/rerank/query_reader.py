"""Reading rerank input: one query a line, with the candidates to score against it.

A line is ``{"query_id", "query", "candidates": [{"id", "text"}, ...]}`` (plain or
gzip JSON Lines), or ``{"query_id", "query"}`` alone for a job whose candidates a worker
finds by searching a collection. As with documents, a line that cannot become a query is reported
with its line number and reason, and every other line is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from embedq.api.ingest.reader import (
    MAX_TEXT_CHARS,
    Rejected,
    once_per_id,
    parse_row,
    readable_lines,
)
from embedq.jobs.contracts import Candidate, Query

# per query, whether listed or found by a search: the API's limit, and a search's
MAX_CANDIDATES_PER_QUERY = 10_000


def read_queries(
    path: Path, *, seen: set[str] | None = None, searched: bool = False
) -> Iterator[Query | Rejected]:
    """Queries and rejections of one file, in file order; a query id seen before is rejected.

    Pass the same ``seen`` set for every file of a job, so ids are unique across all of them.
    ``searched``: lines carry no candidates, a worker finds them (see ``query_from``).
    """
    seen = set() if seen is None else seen
    for line in readable_lines(path):
        if isinstance(line, Rejected):  # the file broke off here: the lines before stand
            yield line
            continue
        number, raw = line
        row = parse_row(raw, number)
        outcome = (
            row
            if isinstance(row, Rejected)
            else query_from(row, number, where=f"line {number}", searched=searched)
        )
        where = f"line {number} of {path.name}"
        yield once_per_id(outcome, seen, number=number, where=where, label="query_id")


def query_from(
    row: dict[str, Any], number: int, *, where: str, searched: bool = False
) -> Query | Rejected:
    """The query in one parsed row, or why it is not one (``where`` names the row).

    ``searched``: the job takes candidates from a search, so the row must bring none
    (silently dropping a row's own candidates would score something else than it says).
    """
    query_id = _id(row.get("query_id"))
    if query_id is None:
        return Rejected(number, f"{where} has no usable query_id (a string or an integer)")
    problem = _text_problem(row.get("query"), "query")
    if problem is None and not row["query"].strip():
        problem = "query is empty"
    if problem is not None:
        return Rejected(number, f"{where}: {problem}", query_id)
    if searched:
        if row.get("candidates") is not None:
            problem = "candidates come from the job's collection: the line must not list its own"
            return Rejected(number, f"{where}: {problem}", query_id)
        return Query(query_id, row["query"], ())
    candidates = _candidates(row.get("candidates"))
    if isinstance(candidates, str):
        return Rejected(number, f"{where}: {candidates}", query_id)
    return Query(query_id, row["query"], candidates)


def pair_bounded(
    queries: Iterable[Query], *, max_pairs: int, searched: int = 0
) -> Iterator[list[Query]]:
    """Batches of whole queries holding at most ``max_pairs`` candidates in all.

    A query with more candidates than that is a batch of its own: the worker's runtime
    packs any number of pairs into micro-batches that fit its memory budget. A query
    without candidates counts as the ``searched`` ones a worker will find for it.
    """
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be at least 1, got {max_pairs}")
    batch: list[Query] = []
    pairs = 0
    for query in queries:
        size = len(query.candidates) or searched
        if batch and pairs + size > max_pairs:
            yield batch
            batch, pairs = [], 0
        batch.append(query)
        pairs += size
    if batch:
        yield batch


def _candidates(value: object) -> tuple[Candidate, ...] | str:
    """The candidates, or what is wrong with them."""
    if not isinstance(value, list) or not value:
        return "candidates must be a non-empty list of {id, text} objects"
    seen: set[str] = set()
    candidates = []
    for number, item in enumerate(value, start=1):
        if not isinstance(item, dict):
            return f"candidate {number} is not an object"
        candidate_id = _id(item.get("id"))
        if candidate_id is None:
            return f"candidate {number} has no usable id (a string or an integer)"
        if candidate_id in seen:
            return f"candidate {number}: duplicate id {candidate_id!r}"
        problem = _text_problem(item.get("text"), "text")
        if problem is not None:
            return f"candidate {candidate_id!r}: {problem}"
        seen.add(candidate_id)
        candidates.append(Candidate(candidate_id, item["text"]))
    return tuple(candidates)


def _id(value: object) -> str | None:
    if value is None or isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    return None if "\x00" in text or not text else text  # no database text column takes a NUL


def _text_problem(text: object, name: str) -> str | None:
    if text is None:
        return f"no {name}"
    if not isinstance(text, str):
        return f"{name} must be a string, not {type(text).__name__}"
    if len(text) > MAX_TEXT_CHARS:
        return f"{name} has {len(text):,} characters, more than the {MAX_TEXT_CHARS:,} accepted"
    return None
