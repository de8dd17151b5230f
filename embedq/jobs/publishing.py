"""Which batches need a message: those nothing published yet, and those whose message was lost.

The ledger, not the broker, is the truth about work. A batch stays queued until a worker
takes it, whatever happened to the message meant to bring it there: a broker restarted
or emptied, a retry held in the memory of a worker that died, a producer cut off between
recording a batch and publishing it. Each batch records when its latest message was
published (``published_at``), and a reaper round judges, queue by queue ("lanes"), which
queued batches have no message any more:

- never published: a sync's sweep, queued as the job's last batch landed;
- running under a lease that ran out: its worker is gone;
- overtaken: a worker took a batch of the same lane published after it, a period ago or
  more. The broker's queue is first in, first out, so its own message is gone;
- beyond the queue's depth: the lane holds N batches published a period ago or more, the
  broker's queue D < N messages. The N - D oldest have none. Judged so in two rounds in a
  row, since a message a worker has just taken is in neither the queue nor a claim yet.

A deep, healthy queue never looks lost: each waiting batch has its message in the queue
(depth at least the batches waiting), and workers take them in order (none overtaken).
Judged batches are stamped published in the same transaction, which one reaper at a
time runs (a Postgres advisory lock; on SQLite the file's write lock), so a lost batch
is published once a period across all workers. A duplicate message is harmless anyway:
the claim is guarded.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from embedq.jobs.clock import moment
from embedq.jobs.constants import (
    OVERTAKE_SLACK_SECONDS,
    OVERTAKE_WINDOW_SECONDS,
    PUBLISH_ROUND_LIMIT,
    REAPER_LOCK_KEY,
    REPUBLISH_PERIOD_SECONDS,
)
from embedq.jobs.db import transaction
from embedq.jobs.schema import Batch, Job
from embedq.jobs.status import BatchStatus, JobKind
from embedq.jobs.steps import apply


@dataclass(frozen=True)
class Lane:
    """The job kinds whose batches share one broker queue, and how many messages it holds."""

    kinds: frozenset[JobKind]
    depth: int | None  # None: unknown (the broker is out of reach), so not judged by it


NEVER_PUBLISHED = "never published"


@dataclass(frozen=True)
class Republish:
    """A batch to publish again, and why."""

    batch_id: str
    reason: str

    @property
    def lost(self) -> bool:
        """Whether its message went missing (rather than nothing ever sent one)."""
        return self.reason != NEVER_PUBLISHED


@dataclass(frozen=True)
class Judgement:
    """One round's verdict: what to publish now (stamped published), and the batches
    beyond the queue's depth this round, published if they still are in the next."""

    publish: list[Republish]
    suspects: frozenset[str] = frozenset()


def take_batches_to_publish(
    sessions: sessionmaker[Session],
    *,
    lanes: Sequence[Lane],
    suspects: frozenset[str] = frozenset(),
    now: datetime | None = None,
    period: float = REPUBLISH_PERIOD_SECONDS,
    limit: int = PUBLISH_ROUND_LIMIT,
) -> Judgement:
    """What to publish now; nothing while another reaper judges. ``suspects``: the
    previous round's, from the same caller."""
    now = moment(now)
    since = now - timedelta(seconds=period)
    with transaction(sessions) as s:
        if not _reapers_turn(s):
            return Judgement([], suspects)
        taken = _never_published(s, limit=limit) + _expired_leases(s, now, since, limit=limit)
        beyond: list[Republish] = []
        for lane in lanes:
            overtaken = _overtaken(s, lane, now, since, limit=limit)
            beyond += _beyond_depth(s, lane, since, [t.batch_id for t in overtaken], limit=limit)
            taken += overtaken
        taken = (taken + [t for t in beyond if t.batch_id in suspects])[:limit]
        _stamp(s, [t.batch_id for t in taken], now)
        return Judgement(taken, frozenset(t.batch_id for t in beyond))


def take_unpublished(
    sessions: sessionmaker[Session], *, job_id: str, now: datetime | None = None
) -> list[str]:
    """The job's queued batches nothing published yet (a sync's sweep), stamped published."""
    now = moment(now)
    with transaction(sessions) as s:
        batch_ids = [t.batch_id for t in _never_published(s, job_id=job_id)]
        _stamp(s, batch_ids, now)
        return batch_ids


def _reapers_turn(s: Session) -> bool:
    if s.get_bind().dialect.name != "postgresql":
        return True  # BEGIN IMMEDIATE: this transaction already holds the whole file
    taken = s.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": REAPER_LOCK_KEY})
    return bool(taken)


def _never_published(
    s: Session, *, limit: int = PUBLISH_ROUND_LIMIT, job_id: str | None = None
) -> list[Republish]:
    query = select(Batch.id).where(Batch.status == BatchStatus.queued, Batch.published_at.is_(None))
    if job_id is not None:
        query = query.where(Batch.job_id == job_id)
    return _taken(s, query.order_by(Batch.created_at).limit(limit), NEVER_PUBLISHED)


def _expired_leases(s: Session, now: datetime, since: datetime, *, limit: int) -> list[Republish]:
    query = select(Batch.id).where(
        Batch.status == BatchStatus.running,
        Batch.lease_expires_at < now,
        or_(Batch.published_at.is_(None), Batch.published_at < since),
    )
    query = query.order_by(Batch.lease_expires_at).limit(limit)
    return _taken(s, query, "its lease ran out (its worker is gone)")


def _overtaken(
    s: Session, lane: Lane, now: datetime, since: datetime, *, limit: int
) -> list[Republish]:
    """Queued batches published before one that a worker took a period ago or more."""
    frontier = s.scalar(
        select(func.max(Batch.published_at)).where(
            _in_lane(lane.kinds),
            Batch.status != BatchStatus.queued,
            Batch.started_at >= now - timedelta(seconds=OVERTAKE_WINDOW_SECONDS),
            Batch.started_at < since,
            # taken through the message it was published with (not an older one)
            Batch.started_at > Batch.published_at,
        )
    )
    if frontier is None:
        return []
    query = select(Batch.id).where(
        Batch.status == BatchStatus.queued,
        _in_lane(lane.kinds),
        Batch.published_at < frontier - timedelta(seconds=OVERTAKE_SLACK_SECONDS),
    )
    query = query.order_by(Batch.published_at).limit(limit)
    return _taken(s, query, "overtaken by a later batch: its message was lost")


def _beyond_depth(
    s: Session, lane: Lane, since: datetime, taken: Collection[str], *, limit: int
) -> list[Republish]:
    """The oldest waiting batches of the lane that the broker's queue has no room for."""
    if lane.depth is None:
        return []
    waiting = and_(
        Batch.status == BatchStatus.queued, _in_lane(lane.kinds), Batch.published_at < since
    )
    missing = (s.scalar(select(func.count()).where(waiting)) or 0) - lane.depth - len(taken)
    if missing <= 0:
        return []
    query = select(Batch.id).where(waiting, Batch.id.not_in(list(taken)))
    query = query.order_by(Batch.published_at).limit(min(missing, limit))
    reason = f"{missing + len(taken)} more waiting than the broker's queue holds"
    return _taken(s, query, reason)


def _in_lane(kinds: frozenset[JobKind]) -> ColumnElement[bool]:
    names = sorted(kind.value for kind in kinds)
    return select(Job.id).where(Job.id == Batch.job_id, Job.kind.in_(names)).exists()


def _taken(s: Session, query: Select[tuple[str]], reason: str) -> list[Republish]:
    return [Republish(batch_id, reason) for batch_id in s.scalars(_lockable(query))]


def _lockable(query: Select[tuple[str]]) -> Select[tuple[str]]:
    # rows a transition holds right now are skipped: they are changing anyway
    return query.with_for_update(of=Batch, skip_locked=True)


def _stamp(s: Session, batch_ids: Sequence[str], now: datetime) -> None:
    if batch_ids:
        stamped = update(Batch).where(Batch.id.in_(list(batch_ids)))
        apply(s, stamped.values(published_at=now, publishes=Batch.publishes + 1))
