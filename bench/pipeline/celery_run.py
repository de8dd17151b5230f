"""The pipeline with a real ``embedq worker`` process: Celery over Redis, timed until the job ends.

The worker gets the run's services, its own queue, device and budget through
``EMBEDQ_*`` variables. A small warm-up job first waits out its start and its
model load, so each timed job meets a worker that is already up, as in service.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench.pipeline.config import (
    CELERY_S_PER_DOC,
    JOB_POLL_S,
    LOGGER,
    WORKER_START_TIMEOUT_S,
    WORKER_STOP_TIMEOUT_S,
)
from bench.pipeline.instruments import Stopwatch, TimedQueue, producer_instruments
from bench.pipeline.session import BenchSession
from bench.runtime.measure import now
from embedq import jobs
from embedq.api.ingest.producer import IngestRequest, submit
from embedq.settings import Settings
from embedq.workers.queues import BatchQueue, make_queue

logger = logging.getLogger(LOGGER)

LOG_TAIL_CHARS = 3000


class CeleryRunError(RuntimeError):
    """The worker process died, or a job did not end in time."""


@dataclass(frozen=True)
class CeleryRun:
    """One timed job through a worker process, and the ledger's record of its batches."""

    job: jobs.JobView
    seconds: float
    submit_seconds: float
    producer: dict[str, float]
    started_at: datetime
    batches: list[jobs.BatchView]


def worker_environment(settings: Settings) -> dict[str, str]:
    """The ``EMBEDQ_*`` variables that point a worker at this run's services and queue."""
    values = {
        "EMBEDQ_HOME": str(settings.home),
        "EMBEDQ_BROKER_URL": settings.broker_url,
        "EMBEDQ_DATABASE_URL": settings.database_url,
        "EMBEDQ_QDRANT_URL": settings.qdrant_url,
        "EMBEDQ_QUEUE": settings.queue,
        "EMBEDQ_DEVICE": settings.device,
        "EMBEDQ_MEMORY_BUDGET": settings.memory_budget,
        "EMBEDQ_LEASE_SECONDS": str(settings.lease_seconds),
        "HF_HUB_OFFLINE": "1",
        "TQDM_DISABLE": "1",
    }
    return {name: str(value) for name, value in values.items() if value is not None}


@contextlib.contextmanager
def worker_process(settings: Settings, log_path: Path) -> Iterator[subprocess.Popen]:
    """``embedq worker`` (one pool process) for the block, stopped with its children after."""
    command = [sys.executable, "-m", "embedq.api.cli", "worker", "--concurrency=1"]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            env={**os.environ, **worker_environment(settings)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so its pool child stops with it
        )
    logger.info("started embedq worker (pid %d) on queue %s", process.pid, settings.queue)
    try:
        yield process
    finally:
        stop_worker(process)


def stop_worker(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=WORKER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class CeleryPipeline:
    """Jobs submitted here to a running worker process, each timed until the ledger ends it."""

    def __init__(self, session: BenchSession, worker: subprocess.Popen, log_path: Path) -> None:
        self.session = session
        self.settings = session.settings(broker=True)
        self.queue: BatchQueue = make_queue(
            self.settings, sessions=session.sessions, store=session.store
        )
        self.worker = worker
        self.log_path = log_path

    def warm_up(self, request: IngestRequest) -> None:
        """A first job, untimed: the worker's start and its model load."""
        self.wait_until_ended(self._submit(request, self.queue), WORKER_START_TIMEOUT_S)
        logger.info("worker is up and its model loaded")

    def run(self, request: IngestRequest, documents: int) -> CeleryRun:
        """From ``submit`` until the ledger says the job ended."""
        watch = Stopwatch()
        started_at = datetime.now(timezone.utc)
        with producer_instruments(watch, self.session.store):
            started = now(self.session.device)
            job_id = self._submit(request, TimedQueue(self.queue, watch))
            submitted = now(self.session.device) - started
        timeout = WORKER_START_TIMEOUT_S + documents * CELERY_S_PER_DOC
        job = self.wait_until_ended(job_id, timeout)
        seconds = now(self.session.device) - started
        logger.info("Celery pipeline: job %s %s in %.1f s", job_id, job.status.value, seconds)
        batches = jobs.list_batches(self.session.sessions, job_id=job_id)
        return CeleryRun(job, seconds, submitted, dict(watch.seconds), started_at, batches)

    def wait_until_ended(self, job_id: str, timeout: float) -> jobs.JobView:
        """Poll the ledger until the job ends; fails if the worker dies or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            view = jobs.get_job(self.session.sessions, job_id=job_id)
            if view is not None and view.ended:
                return view
            if self.worker.poll() is not None or time.monotonic() > deadline:
                self._give_up(job_id, timeout)
            time.sleep(JOB_POLL_S)

    def _give_up(self, job_id: str, timeout: float) -> None:
        jobs.cancel_job(self.session.sessions, job_id=job_id, reason="the benchmark gave up")
        why = "the worker exited" if self.worker.poll() is not None else f"over {timeout:.0f} s"
        tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:]
        raise CeleryRunError(f"job {job_id} did not end ({why}); worker log ends: {tail}")

    def _submit(self, request: IngestRequest, queue: BatchQueue) -> str:
        return submit(
            request,
            sessions=self.session.sessions,
            store=self.session.store,
            queue=queue,
            high_water_mark=self.settings.high_water_mark,
        )


@contextlib.contextmanager
def celery_pipeline(session: BenchSession, warmup: IngestRequest) -> Iterator[CeleryPipeline]:
    """A worker process, warmed up, for the block; stopped afterwards."""
    log_path = session.scratch / "worker.log"
    with worker_process(session.settings(broker=True), log_path) as worker:
        pipeline = CeleryPipeline(session, worker, log_path)
        pipeline.warm_up(warmup)
        yield pipeline
