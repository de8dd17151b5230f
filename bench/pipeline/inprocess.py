"""The whole pipeline in this process: ``submit`` into an in-process queue of ``process_batch``.

This is what a Celery worker runs for each task, without the broker: the producer
reads the JSON Lines file, records each batch in the Postgres ledger and publishes
it; publishing runs the batch at once (claim, embed), and hands its write (upsert
to the Qdrant server, complete) to the background writer, as ``make_queue`` does.
The model is injected through ``WorkerContext(models=GivenModels(...))``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from bench.pipeline.config import LOGGER
from bench.pipeline.instruments import Stopwatch, TimedQueue, producer_instruments
from bench.pipeline.session import BenchSession
from bench.runtime.measure import now
from embedq import jobs
from embedq.api.ingest.producer import IngestRequest, submit
from embedq.models import BatchEmbedder, GivenModels
from embedq.workers.context import WorkerContext
from embedq.workers.hooks import default_hooks
from embedq.workers.hooks.write_ended import WriteEnded
from embedq.workers.ingest.writer import BatchWriter
from embedq.workers.lifecycle import process_batch
from embedq.workers.outcomes import BatchOutcome
from embedq.workers.queues import InProcessQueue
from embedq.workers.recovery import Publish

logger = logging.getLogger(LOGGER)


@dataclass
class WorkerLog:
    """Every batch the in-process worker ran: its final outcome, and the time spent in
    ``process_batch`` on the producer's thread (the writer's thread is timed by stage)."""

    outcomes: list[BatchOutcome] = field(default_factory=list)
    seconds: float = 0.0

    def record(self, outcome: BatchOutcome) -> None:
        if outcome.status != "writing":  # a written batch is recorded by the writer
            self.outcomes.append(outcome)

    def stage_seconds(self) -> dict[str, float]:
        """``BatchOutcome.timings`` summed over every batch, stage by stage."""
        totals: dict[str, float] = {}
        for outcome in self.outcomes:
            for stage, seconds in outcome.timings.items():
                totals[stage] = totals.get(stage, 0.0) + seconds
        return totals


@dataclass(frozen=True)
class PipelineRun:
    """One timed pipeline run and what it recorded."""

    job: jobs.JobView
    seconds: float
    producer: dict[str, float]
    worker: WorkerLog | None = None


def in_process_queue(context: WorkerContext, log: WorkerLog) -> InProcessQueue:
    """The embedded queue as ``make_queue`` builds it, recording each batch's outcome (a
    written batch's through the context's ``WriteEnded`` hook)."""

    def run(batch_id: str, publish: Publish) -> None:
        started = time.perf_counter()
        log.record(process_batch(context, batch_id, publish=publish))
        log.seconds += time.perf_counter() - started

    return InProcessQueue(run, context.writer)


def run_in_process(
    session: BenchSession, request: IngestRequest, embedder: BatchEmbedder
) -> PipelineRun:
    """``submit`` from the first line read to the job's end (in-process, both are one call)."""
    settings = session.settings()
    log, watch = WorkerLog(), Stopwatch()
    context = WorkerContext(
        settings=settings,
        sessions=session.sessions,
        store=session.store,
        models=GivenModels(embedder),
        writer=BatchWriter(),  # the bench writes to a Qdrant server, as make_queue would
        hooks=(*default_hooks(), WriteEnded(log.record)),
    )
    queue = TimedQueue(in_process_queue(context, log), watch)
    with producer_instruments(watch, session.store):
        started = now(session.device)
        try:
            job_id = submit(
                request,
                sessions=session.sessions,
                store=session.store,
                queue=queue,
                high_water_mark=settings.high_water_mark,
            )
        finally:
            context.writer.close()
        seconds = now(session.device) - started
    job = ended_job(session, job_id)
    logger.info("in-process pipeline: job %s %s in %.1f s", job_id, job.status.value, seconds)
    return PipelineRun(job, seconds, dict(watch.seconds), log)


def ended_job(session: BenchSession, job_id: str) -> jobs.JobView:
    job = jobs.get_job(session.sessions, job_id=job_id)
    if job is None or not job.ended:
        raise RuntimeError(f"job {job_id} has not ended: {job}")
    return job
