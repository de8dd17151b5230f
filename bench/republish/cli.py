"""Duplicate messages in a normal run: a 20,000-document job through two worker processes.

On the real Postgres, Redis and Qdrant servers, two ``embedq worker`` processes drain
one ingestion while their reapers run as in service. Nothing fails, so every message
beyond one per batch is a duplicate: a reaper that took a waiting batch for a lost one.
The model is a tiny random encoder, so the run is about the queue, not the embedding.
With ``--high-water-mark 1000`` the producer queues the whole job at once and batches
wait minutes for their turn, far past the reapers' 30 s period: a deep, healthy queue.

Reads the ledger's count of messages per batch (``publishes``) and the reapers' log
lines, checks every document landed exactly once, prints the JSON result and writes
it to ``bench/results/republish-<device>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.pipeline.celery_run import worker_process
from bench.pipeline.config import Services
from bench.pipeline.services import (
    drop_queue,
    ledger_schema,
    qdrant_collections,
    queue_name,
    run_tag,
)
from bench.runtime.config import DATA
from bench.runtime.report import device_name, record, versions
from embedq import jobs
from embedq.api.client import Client
from embedq.models.synthetic import build_encoder
from embedq.settings import Settings

REPUBLISHED = re.compile(r"batch \w+: (.+): publishing it")
TARGET_DUPLICATE_RATE = 0.01


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = run(args)
    record(result, "republish", args.out)
    return 0 if result["duplicate_rate"] <= TARGET_DUPLICATE_RATE else 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    services = Services.from_environment()
    parser = argparse.ArgumentParser(prog="python -m bench.republish", description=__doc__)
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--high-water-mark", type=int, default=64)
    parser.add_argument("--data", type=Path, default=DATA, help="a copy of shared/data")
    parser.add_argument("--database-url", default=services.database_url)
    parser.add_argument("--redis-url", default=services.redis_url)
    parser.add_argument("--qdrant-url", default=services.qdrant_url)
    parser.add_argument("--out", help="where to write the JSON (default: bench/results/)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    tag = run_tag()
    with (
        tempfile.TemporaryDirectory(prefix="embedq-republish-") as scratch,
        ledger_schema(args.database_url, tag) as ledger,
        qdrant_collections(args.qdrant_url, tag) as collections,
    ):
        work = Path(scratch)
        texts = scifact_texts(args.data)
        settings = Settings(
            home=work / "home",
            database_url=ledger,
            broker_url=args.redis_url,
            qdrant_url=args.qdrant_url,
            queue=queue_name(tag),
            high_water_mark=args.high_water_mark,
        )
        corpus = write_corpus(work / "corpus.jsonl", texts, args.documents)
        model = build_encoder(work / "model", texts[:2000], style="bert", m3_heads=False)
        collection = collections.new("republish")
        try:
            with workers(settings, work, args.workers) as logs:
                figures = ingest(Client(settings), corpus, collection, model, args)
                reasons = republish_reasons(logs)
        finally:
            drop_queue(args.redis_url, settings.queue)
    return report(args, figures, reasons)


@contextlib.contextmanager
def workers(settings: Settings, work: Path, count: int) -> Iterator[list[Path]]:
    logs = [work / f"worker-{i}.log" for i in range(count)]
    with contextlib.ExitStack() as stack:
        for log in logs:
            stack.enter_context(worker_process(settings, log))
        yield logs


def ingest(
    client: Client, corpus: Path, collection: str, model: Path, args: argparse.Namespace
) -> dict[str, Any]:
    started = time.monotonic()
    job_id = client.ingest(
        [corpus],
        collection=collection,
        model=str(model),
        long_text="truncate",
        max_length=128,
        batch_size=args.batch_size,
    )
    view = client.wait(job_id, timeout=3600, poll_seconds=1.0)
    seconds = time.monotonic() - started
    batches = jobs.list_batches(client.sessions, job_id=job_id)
    physical = view.options.physical_collection
    return {
        "job_status": view.status.value,
        "documents_done": view.documents_done,
        "documents_failed": view.documents_failed,
        "points": client.store.client.count(physical, exact=True).count,
        "seconds": round(seconds, 1),
        "batches": len(batches),
        "messages": sum(batch.publishes for batch in batches),
        # how long batches waited in the queue: past the reapers' 30 s period, they are judged
        "longest_wait_s": round(max(waited(batch) for batch in batches), 1),
        "batches_waiting_over_30_s": sum(waited(batch) > 30 for batch in batches),
        "attempts": sum(batch.attempts for batch in batches),
        "splits": view.splits,
    }


def waited(batch: jobs.BatchView) -> float:
    """Seconds from the batch's (last) message to the claim that ran it."""
    if batch.started_at is None or batch.published_at is None:
        return 0.0
    return (batch.started_at - batch.published_at).total_seconds()


def republish_reasons(logs: list[Path]) -> dict[str, int]:
    """How many batches the reapers published again, by the reason they logged."""
    found: Counter[str] = Counter()
    for log in logs:
        found.update(REPUBLISHED.findall(log.read_text(errors="replace")))
    return dict(found)


def report(
    args: argparse.Namespace, figures: dict[str, Any], reasons: dict[str, int]
) -> dict[str, Any]:
    duplicates = figures["messages"] - figures["batches"]
    return {
        "benchmark": "republish",
        "command": "python -m bench.republish",
        "device": device_name("cpu"),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "documents": args.documents,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "high_water_mark": args.high_water_mark,
        **figures,
        "documents_per_s": round(figures["documents_done"] / figures["seconds"], 1),
        "duplicate_messages": duplicates,
        "duplicate_rate": round(duplicates / max(figures["batches"], 1), 4),
        "republished_by_reason": reasons,
        "target_duplicate_rate": TARGET_DUPLICATE_RATE,
        "every_document_once": figures["points"] == args.documents == figures["documents_done"],
    }


def scifact_texts(data: Path) -> list[str]:
    texts = []
    with (data / "scifact" / "corpus.jsonl").open() as lines:
        for line in lines:
            row = json.loads(line)
            texts.append(f"{row.get('title', '')} {row.get('text', '')}".strip())
    return texts


def write_corpus(path: Path, texts: list[str], count: int) -> Path:
    """``count`` documents: the corpus over again as often as needed, each with its own id."""
    with path.open("w") as out:
        for i in range(count):
            out.write(json.dumps({"id": f"doc-{i}", "text": texts[i % len(texts)]}) + "\n")
    return path
