"""Skipping what a collection already holds, and marking what a sync's input still holds.

With ``skip_unchanged``, documents are looked up a group at a time by id (one Qdrant
request per group, on the ``doc_id`` payload index): one whose stored content hash
equals the hash of what it would be embedded as now is not embedded again, and is
counted as unchanged. The hashes live on the points themselves, written by the same
upsert as the vectors, so they can never claim a version the collection does not hold.

A sync also marks every stored document its input names (``seen_by``), changed or
not, and rejected lines that still had an id: its sweep removes only what is
neither written nor marked by it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from qdrant_client import QdrantClient

from embedq.api.ingest.batching import groups
from embedq.api.ingest.reader import Rejected
from embedq.jobs.contracts import Document, IngestOptions
from embedq.jobs.fingerprint import content_hash, embedding_settings
from embedq.store import documents as stored

SCREEN_GROUP = 256  # documents looked up per request

Outcome = Document | Rejected


@dataclass(frozen=True)
class Screen:
    """What a job with ``skip_unchanged`` compares its documents against."""

    client: QdrantClient
    physical: str
    job_id: str
    settings: list[Any]
    sync: bool

    @classmethod
    def of(
        cls, client: QdrantClient, *, job_id: str, model: str, options: IngestOptions
    ) -> Screen | None:
        """The screen of a job, or None when it embeds every document it is given."""
        if not options.skip_unchanged:
            return None
        return cls(
            client=client,
            physical=options.physical_collection,
            job_id=job_id,
            settings=embedding_settings(model, options.embedding),
            sync=options.sync,
        )

    def changed(
        self, outcomes: Iterable[Outcome], *, on_unchanged: Callable[[int], None]
    ) -> Iterator[Outcome]:
        """The outcomes less the unchanged documents, whose number goes to ``on_unchanged``."""
        for group in groups(outcomes, SCREEN_GROUP):
            kept = self._screen(group)
            yield from kept
            on_unchanged(len(group) - len(kept))

    def lookup(self, documents: list[Document]) -> dict[str, str | None]:
        """The stored hash of each of ``documents`` the collection holds (one request)."""
        return stored.stored_hashes(self.client, self.physical, [d.id for d in documents])

    def unchanged(self, documents: list[Document]) -> set[str]:
        """The ids of ``documents`` the collection holds exactly as they would be written."""
        hashes = self.lookup(documents)
        return {d.id for d in documents if hashes.get(d.id) == self.hash_of(d)}

    def hash_of(self, document: Document) -> str:
        return content_hash(document, self.settings)

    def _screen(self, group: list[Outcome]) -> list[Outcome]:
        documents = [outcome for outcome in group if isinstance(outcome, Document)]
        same = self.unchanged(documents)
        if self.sync:
            named = [o.id if isinstance(o, Document) else o.doc_id for o in group]
            stored.mark_seen(self.client, self.physical, [i for i in named if i], self.job_id)
        return [o for o in group if not (isinstance(o, Document) and o.id in same)]
