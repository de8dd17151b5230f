"""The documents: SciFact abstracts as JSON Lines input, and the producer's batches of them."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from bench.runtime.config import DATA
from bench.runtime.corpus import mixed_corpus, read_documents
from embedq.api.ingest.batching import length_bucketed
from embedq.api.ingest.reader import read_documents as read_input
from embedq.jobs.contracts import Document

T = TypeVar("T")


def model_texts(count: int) -> list[str]:
    """``count`` SciFact abstracts (title + text), the runtime benchmark's seeded sample."""
    return mixed_corpus(count, 0, data=DATA).texts


def null_texts(count: int) -> list[str]:
    """``count`` texts for the null model: SciFact abstracts in file order, reused in turn."""
    abstracts = read_documents(DATA, "scifact")
    return list(itertools.islice(itertools.cycle(abstracts), count))


def write_jsonl(path: Path, texts: Sequence[str], prefix: str) -> Path:
    """One document a line, each with its own id (reused texts get distinct ids)."""
    with path.open("w", encoding="utf-8") as out:
        for number, text in enumerate(texts):
            out.write(json.dumps({"id": f"{prefix}-{number}", "text": text}) + "\n")
    return path


def write_documents(path: Path, batches: Sequence[Sequence[Document]]) -> Path:
    """Documents as JSON Lines, batch after batch, keeping their ids."""
    with path.open("w", encoding="utf-8") as out:
        for batch in batches:
            for document in batch:
                out.write(json.dumps({"id": document.id, "text": document.text}) + "\n")
    return path


def split_evenly(items: Sequence[T], parts: int) -> list[list[T]]:
    """``items`` in ``parts`` consecutive runs whose sizes differ by at most one."""
    size, extra = divmod(len(items), parts)
    cuts = [index * size + min(index, extra) for index in range(parts + 1)]
    return [list(items[start:stop]) for start, stop in itertools.pairwise(cuts)]


def producer_batches(path: Path, batch_size: int) -> list[list[Document]]:
    """The batches the producer makes of ``path``: its reader and its length bucketing."""
    documents = (item for item in read_input(path) if isinstance(item, Document))
    return list(length_bucketed(documents, batch_size=batch_size))


def batch_texts(batches: Sequence[Sequence[Document]]) -> list[list[str]]:
    return [[document.text for document in batch] for batch in batches]
