"""What an ingest would do, without doing it: ``embedq ingest --dry-run``.

Reads the input and looks every document up as ``--skip-unchanged`` would, and for
``--sync`` lists the stored documents the input no longer holds. Nothing is written:
no job, no batch, no mark on any point.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

from embedq.api.ingest.batching import groups
from embedq.api.ingest.producer import IngestRequest, job_options, read_all
from embedq.api.ingest.reader import Rejected
from embedq.api.ingest.screening import SCREEN_GROUP, Screen
from embedq.jobs.contracts import Document
from embedq.models.describe import describe_model
from embedq.store import QdrantStore
from embedq.store import documents as stored


@dataclass
class IngestPlan:
    """The ids an ingest would embed, skip as unchanged, and (a sync) delete."""

    collection: str
    embed: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    rejected: int = 0
    # of those, lines with no id at all: a sync cannot know which documents they were
    unreadable: int = 0
    named_rejected: list[str] = field(default_factory=list)
    # documents the collection would hold before a sync's sweep
    stored_after: int = 0
    # why a sync would refuse to delete (too large a share), or None
    refusal: str | None = None


def plan_ingest(request: IngestRequest, *, store: QdrantStore) -> IngestPlan:
    """What ``request`` would embed, skip and delete if it were submitted now."""
    plan = IngestPlan(request.collection)
    physical = store.resolve(request.collection)
    outcomes = read_all(request.files)
    if physical is None:  # a new collection: everything is embedded, nothing is there
        _count(plan, outcomes, None, skip=False)
        return plan
    outputs = describe_model(request.model).choose(request.outputs)
    options = job_options(request, outputs, physical)
    # the screen of a job that skips, so that it can look documents up either way
    looking = dataclasses.replace(options, skip_unchanged=True)
    screen = Screen.of(store.client, job_id="", model=request.model, options=looking)
    assert screen is not None
    new = _count(plan, outcomes, screen, skip=options.skip_unchanged)
    plan.stored_after = stored.count_documents(store.client, physical) + new
    if request.sync:
        _plan_sweep(plan, store, physical, request.max_delete_share)
    return plan


def _count(
    plan: IngestPlan, outcomes: Iterable[Document | Rejected], screen: Screen | None, *, skip: bool
) -> int:
    """Sort the outcomes into the plan; returns how many documents the collection lacks."""
    new = 0
    for group in groups(outcomes, SCREEN_GROUP):
        documents = [outcome for outcome in group if isinstance(outcome, Document)]
        for outcome in group:
            if isinstance(outcome, Rejected):
                plan.rejected += 1
                if outcome.doc_id is None:
                    plan.unreadable += 1
                else:
                    plan.named_rejected.append(outcome.doc_id)
        hashes = screen.lookup(documents) if screen is not None else {}
        new += sum(document.id not in hashes for document in documents)
        for document in documents:
            same = (
                skip and screen is not None and hashes.get(document.id) == screen.hash_of(document)
            )
            (plan.skip if same else plan.embed).append(document.id)
    return new


def _plan_sweep(plan: IngestPlan, store: QdrantStore, physical: str, limit: float) -> None:
    named = set(plan.embed) | set(plan.skip) | set(plan.named_rejected)
    plan.delete = [i for i in stored.document_ids(store.client, physical) if i not in named]
    if plan.unreadable:
        plan.refusal = (
            f"{plan.unreadable:,} line(s) of the input have no readable id: "
            "a sync would delete nothing"
        )
        plan.delete = []
    elif plan.delete and len(plan.delete) > limit * plan.stored_after:
        plan.refusal = (
            f"a sync would refuse to delete {len(plan.delete):,} of {plan.stored_after:,} "
            f"documents, more than the {limit:.0%} allowed (--force deletes them)"
        )
