"""One cancellation: a one-batch job, cancelled with ``embedq cancel`` while a worker embeds it.

The times come from where each thing happened: the cancel from the ledger (the job's
``finished_at``, stamped in the cancel's transaction), the refused renewal and the
stop from the worker's own log lines. All are on one host's clock.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench.cancel.worker_log import line_with, wait_for_line, written_at
from embedq import jobs
from embedq.api.client import Client

STOPPED = re.compile(r"stopped after (\d+) of (\d+) inputs")
RUNNING_POLL_S = 0.02
JOB_TIMEOUT_S = 600


@dataclass(frozen=True)
class Setup:
    """What every trial shares: the client, the worker and its log, the workload."""

    client: Client
    worker: subprocess.Popen[bytes]
    log: Path
    environment: dict[str, str]  # the services, for ``embedq cancel``
    model: str
    texts: list[str]
    max_length: int
    lease_seconds: int
    scratch: Path


@dataclass(frozen=True)
class Trial:
    """Seconds from each step of a cancellation to the next, and what the batch left behind."""

    cancel_after_claim_s: float
    command_to_stop_s: float
    cancel_to_stop_s: float
    cancel_to_renewal_s: float
    renewal_to_stop_s: float
    inputs_done: int
    inputs_total: int
    points_written: int


def run_trial(setup: Setup, index: int, *, cancel_after: float, collection: str) -> Trial:
    """A job of one batch, cancelled ``cancel_after`` seconds after the worker claimed it."""
    job_id = ingest(setup, setup.texts, collection=collection, prefix=f"trial{index}")
    batch = wait_until_running(setup.client, job_id)
    started = batch.started_at or datetime.now(timezone.utc)
    time.sleep(max(0.0, cancel_after - seconds_since(started)))
    command_at = datetime.now(timezone.utc)
    cancel(setup, job_id)
    stop = wait_for_line(
        setup.log,
        f"batch {batch.id} dropped",
        worker=setup.worker,
        timeout=setup.lease_seconds + 60,
    )
    return measured(setup, batch, started, command_at, stop, collection=collection)


def measured(
    setup: Setup,
    batch: jobs.BatchView,
    started: datetime,
    command_at: datetime,
    stop: str,
    *,
    collection: str,
) -> Trial:
    """The trial's times, from the ledger's record of the cancel and the worker's log."""
    view = jobs.get_job(setup.client.sessions, job_id=batch.job_id)
    lost = line_with(setup.log, f"lease on batch {batch.id} was lost")
    if view is None or view.finished_at is None or lost is None:
        raise RuntimeError(f"job {batch.job_id} was not seen cancelled and its lease lost")
    cancelled, renewal, stopped = view.finished_at, written_at(lost), written_at(stop)
    progress = STOPPED.search(stop)
    done, total = (int(progress[1]), int(progress[2])) if progress else (-1, -1)
    return Trial(
        cancel_after_claim_s=_seconds(started, command_at),
        command_to_stop_s=_seconds(command_at, stopped),
        cancel_to_stop_s=_seconds(cancelled, stopped),
        cancel_to_renewal_s=_seconds(cancelled, renewal),
        renewal_to_stop_s=_seconds(renewal, stopped),
        inputs_done=done,
        inputs_total=total,
        points_written=points(setup.client, collection),
    )


def ingest(setup: Setup, texts: list[str], *, collection: str, prefix: str) -> str:
    """A job whose documents are all one batch; its id once the batch is queued."""
    path = setup.scratch / f"{prefix}.jsonl"
    with path.open("w") as out:
        for i, text in enumerate(texts):
            out.write(json.dumps({"id": f"{prefix}-{i}", "text": text}) + "\n")
    return setup.client.ingest(
        [path],
        collection=collection,
        model=setup.model,
        long_text="truncate",
        max_length=setup.max_length,
        batch_size=len(texts),
    )


def wait_until_running(client: Client, job_id: str) -> jobs.BatchView:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        running = [
            b for b in jobs.list_batches(client.sessions, job_id=job_id) if b.status == "running"
        ]
        if running:
            return running[0]
        time.sleep(RUNNING_POLL_S)
    raise RuntimeError(f"no batch of job {job_id} ran within {JOB_TIMEOUT_S} s")


def cancel(setup: Setup, job_id: str) -> None:
    """``embedq cancel JOB``, as a user types it."""
    command = [sys.executable, "-m", "embedq.api.cli", "cancel", job_id]
    environment = {**os.environ, **setup.environment}
    subprocess.run(command, env=environment, check=True, capture_output=True)


def points(client: Client, collection: str) -> int:
    physical = client.store.resolve(collection)
    return 0 if physical is None else client.store.client.count(physical, exact=True).count


def seconds_since(moment: datetime) -> float:
    return _seconds(moment, datetime.now(timezone.utc))


def _seconds(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds(), 3)
