"""Part 1: the pipeline around all-MiniLM-L6-v2 against the runtime's ``embed`` alone.

Both measurements use one loaded ``Embedder`` (loaded as a worker loads it, from the
job's options) over the same batches, the ones the producer cuts, in this process.
The runtime is timed before and after the pipeline, so drift on a shared machine shows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bench.pipeline.baselines import AlonePass, runtime_alone
from bench.pipeline.breakdown import (
    celery_breakdown,
    compared,
    in_process_breakdown,
    pipeline_entry,
    rate,
)
from bench.pipeline.celery_run import CeleryRunError, run_celery
from bench.pipeline.config import (
    LOGGER,
    LONG_TEXT,
    MAX_LENGTH,
    MODEL_OUTPUTS,
    MODEL_TARGET,
    WARMUP_DOCS,
    WORKER_START_TIMEOUT_S,
)
from bench.pipeline.corpus import batch_texts, model_texts, producer_batches, write_jsonl
from bench.pipeline.inprocess import run_in_process
from bench.pipeline.session import BenchSession
from bench.runtime.config import MINILM
from bench.runtime.corpus import warmup_texts
from bench.runtime.models import model_folder
from embedq.api.producer import IngestRequest
from embedq.workers.context import BatchEmbedder, load_embedder

logger = logging.getLogger(LOGGER)

# the job options that decide how a worker loads the model (WorkerContext.MODEL_OPTIONS)
MODEL_OPTIONS = {"outputs": MODEL_OUTPUTS, "max_length": MAX_LENGTH, "long_text": LONG_TEXT}
# the Celery job may take this many times the runtime's own time before it is given up
CELERY_SLACK = 10


def request_for(path: Path, collection: str, model: str, batch_size: int) -> IngestRequest:
    return IngestRequest(
        files=[path],
        collection=collection,
        model=model,
        outputs=MODEL_OUTPUTS,
        max_length=MAX_LENGTH,
        long_text=LONG_TEXT,
        batch_size=batch_size,
    )


def runtime_entry(before: AlonePass, after: AlonePass) -> dict[str, Any]:
    """The reference: the mean of the passes before and after the pipeline."""
    return {
        **rate((before.seconds + after.seconds) / 2, before.documents),
        "passes": [rate(p.seconds, p.documents) for p in (before, after)],
        "batch_seconds": [[round(s, 3) for s in p.batch_seconds] for p in (before, after)],
    }


def measure_model(session: BenchSession, docs: int, celery: bool) -> dict[str, Any]:
    texts = model_texts(docs)
    path = write_jsonl(session.scratch / "scifact.jsonl", texts, "scifact")
    batches = batch_texts(producer_batches(path, session.batch_size))
    logger.info("model part: %d SciFact documents in %d batches", len(texts), len(batches))
    with model_folder(MINILM, texts) as (folder, label):
        embedder = load_embedder(session.settings(), str(folder), dict(MODEL_OPTIONS))
        embedder.embed(warmup_texts(texts, [len(text) for text in texts]))
        before = runtime_alone(embedder, batches, session.device)
        pipeline = in_process_entry(session, path, str(folder), embedder)
        after = runtime_alone(embedder, batches, session.device)
        runtime = runtime_entry(before, after)
        reference = runtime["docs_per_s"]
        result = {
            "model": label,
            "documents": len(texts),
            "batches": len(batches),
            "runtime_alone": runtime,
            "pipeline_in_process": compared(pipeline, reference, MODEL_TARGET),
        }
        result["pipeline_celery"] = (
            celery_entry(session, path, str(folder), texts, runtime)
            if celery
            else {"skipped": "run with --celery for a real worker process"}
        )
    return result


def in_process_entry(
    session: BenchSession, path: Path, model: str, embedder: BatchEmbedder
) -> dict[str, Any]:
    name = session.collections.new("minilm_in_process")
    run = run_in_process(session, request_for(path, name, model, session.batch_size), embedder)
    entry = {
        **pipeline_entry(run),
        "points_stored": session.store.count(str(run.job.options["physical_collection"])),
        "where_time_goes": in_process_breakdown(run),
    }
    session.collections.drop(name)
    return entry


def celery_entry(
    session: BenchSession, path: Path, model: str, texts: list[str], runtime: dict[str, Any]
) -> dict[str, Any]:
    warm_path = write_jsonl(session.scratch / "warmup.jsonl", texts[:WARMUP_DOCS], "warmup")
    warmup = request_for(warm_path, session.collections.new("celery_warmup"), model, WARMUP_DOCS)
    name = session.collections.new("minilm_celery")
    timeout = max(WORKER_START_TIMEOUT_S, CELERY_SLACK * runtime["seconds"])
    try:
        run = run_celery(
            session, request_for(path, name, model, session.batch_size), warmup, timeout
        )
    except CeleryRunError as error:
        logger.error("the Celery run failed: %s", error)
        return {"error": str(error)}
    entry = {
        **pipeline_entry(run),
        "points_stored": session.store.count(str(run.job.options["physical_collection"])),
        "where_time_goes": celery_breakdown(run),
    }
    session.collections.drop(name)
    return compared(entry, runtime["docs_per_s"], MODEL_TARGET)
