"""The figures of each measurement: documents/s, ratios to a target, and where the time went."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from bench.pipeline.celery_run import CeleryRun
from bench.pipeline.inprocess import PipelineRun
from bench.runtime.report import _target as target

PREPARE_STAGES = ("claim", "embed")  # on the producer's thread, in process_batch
WRITE_STAGES = ("upsert", "complete")  # on the writer's thread
SETUP_STEPS = ("describe_model", "collection", "create_job")

STAGE_LEGEND = {
    "producer_setup": "describe_model, ensure_collection + begin_bulk_load, the job's creation "
    "(CollectionGuard.create_job)",
    "producer_read": "reading and parsing the JSON Lines file (embedq.api.ingest.reader)",
    "producer_batch": "intake checks, duplicate ids and length bucketing (read excluded)",
    "producer_add_batch": "jobs.add_batch: recording each batch and its documents in Postgres",
    "producer_publish": "queue.publish, less the batch run inside it in-process",
    "producer_queue_depth": "queue.depth (the backpressure check)",
    "producer_seal": "jobs.seal_job, and finish_bulk_load (the HNSW m restored) when it ended",
    "producer_drain": "queue.drain: waiting for the writer to finish the last batches' writes",
    "worker_claim": "BatchOutcome.timings['claim'], summed over batches",
    "worker_embed": "BatchOutcome.timings['embed'] (the model and building points)",
    "worker_other": "process_batch on the producer's thread outside claim and embed: the lease "
    "thread, and waiting for the writer to take the batch (it finishes the one before first)",
    "writer_upsert": "on the writer's thread: BatchOutcome.timings['upsert'] "
    "(QdrantStore.upsert, wait=True)",
    "writer_complete": "behind the writer, on its follow-up thread: "
    "BatchOutcome.timings['complete'] (jobs.complete_batch)",
    "worker_batches": "Celery: each batch's claim to completion, from the ledger's timestamps",
    "other": "the rest: the producer's own loop, backpressure sleeps (none at these sizes)",
}


def rate(seconds: float, documents: int) -> dict[str, Any]:
    return {
        "seconds": round(seconds, 3),
        "documents": documents,
        "docs_per_s": round(documents / seconds, 2) if seconds > 0 else None,
    }


def compared(entry: dict[str, Any], reference: float, goal: float) -> dict[str, Any]:
    """``entry`` with its documents/s as a ratio to ``reference`` and the goal it must meet."""
    ratio = round(entry["docs_per_s"] / reference, 3) if entry["docs_per_s"] else None
    return {**entry, "ratio": ratio, **_goal(target(ratio, ">=", goal))}


def _goal(checked: dict[str, Any]) -> dict[str, Any]:
    return {"target": checked["target"], "met": checked["met"]}


def shares(stages: dict[str, float], total: float) -> dict[str, dict[str, float]]:
    return {
        name: {"seconds": round(seconds, 3), "share": round(seconds / total, 4)}
        for name, seconds in stages.items()
    }


def producer_stages(watch: dict[str, float], inside_publish: float) -> dict[str, float]:
    """The producer's own time by step; ``inside_publish`` is worker time spent in publish."""
    read = watch.get("read", 0.0)
    return {
        "producer_setup": sum(watch.get(step, 0.0) for step in SETUP_STEPS),
        "producer_read": read,
        "producer_batch": watch.get("bucketed", 0.0) - read,
        "producer_add_batch": watch.get("add_batch", 0.0),
        "producer_publish": watch.get("publish", 0.0) - inside_publish,
        "producer_queue_depth": watch.get("queue_depth", 0.0),
        "producer_seal": watch.get("seal_job", 0.0) + watch.get("finish_bulk_load", 0.0),
        "producer_drain": watch.get("drain", 0.0),
    }


def setup_steps(watch: dict[str, float]) -> dict[str, float]:
    """What ``producer_setup`` and ``producer_seal`` are made of, in seconds."""
    return {
        step: round(watch.get(step, 0.0), 3)
        for step in (*SETUP_STEPS, "seal_job", "finish_bulk_load")
    }


def summed(values: Iterable[dict[str, float]]) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for value in values:
        for name, seconds in value.items():
            totals[name] += seconds
    return dict(totals)


def in_process_breakdown(runs: Sequence[PipelineRun]) -> dict[str, Any]:
    """The producer's thread, step by step, adding up to the total; the writer's beside it."""
    workers = [run.worker for run in runs if run.worker is not None]
    total, worker_total = sum(run.seconds for run in runs), sum(w.seconds for w in workers)
    producer = summed(run.producer for run in runs)
    stages = producer_stages(producer, worker_total)
    per_stage = summed(worker.stage_seconds() for worker in workers)
    stages.update({f"worker_{name}": per_stage.get(name, 0.0) for name in PREPARE_STAGES})
    stages["worker_other"] = worker_total - sum(per_stage.get(n, 0.0) for n in PREPARE_STAGES)
    stages["other"] = total - sum(stages.values())
    writer = {f"writer_{name}": per_stage.get(name, 0.0) for name in WRITE_STAGES}
    return {
        "total_seconds": round(total, 3),
        "stages": shares(stages, total),
        "writer_thread": shares(writer, total),
        "overlap": "the writer's thread runs beside the producer's: its shares are of the "
        "same total, and the stages above add up to it without them",
        "producer_steps_s": setup_steps(producer),
    }


def celery_breakdown(runs: Sequence[CeleryRun]) -> dict[str, Any]:
    """Producer steps timed here; the worker's batches from the ledger (they overlap)."""
    total = sum(run.seconds for run in runs)
    producer = summed(run.producer for run in runs)
    stages = producer_stages(producer, 0.0)
    stages["worker_batches"] = sum(_busy(run) for run in runs)
    return {
        "total_seconds": round(total, 3),
        "producer_submit_seconds": round(sum(run.submit_seconds for run in runs), 3),
        "first_claim_after_s": [_first_claim_after(run) for run in runs],
        "worker_idle_s": round(total - stages["worker_batches"], 3),
        "stages": shares(stages, total),
        "producer_steps_s": setup_steps(producer),
        "worker_stages": (
            "not observable from outside the worker process: the Celery task logs only "
            "BatchOutcome.status, and the ledger keeps no per-stage times"
        ),
        "overlap": "the producer and the worker run at the same time, so shares need not add to 1",
    }


def _spans(run: CeleryRun) -> list[tuple[datetime, datetime]]:
    return [(b.started_at, b.finished_at) for b in run.batches if b.started_at and b.finished_at]


def _busy(run: CeleryRun) -> float:
    """Seconds the worker spent on the job's batches, claim to completion, by the ledger."""
    return sum((end - start).total_seconds() for start, end in _spans(run))


def _first_claim_after(run: CeleryRun) -> float | None:
    first = min((start for start, _ in _spans(run)), default=None)
    return None if first is None else round((first - run.started_at).total_seconds(), 3)


def pipeline_entry(runs: Sequence[PipelineRun] | Sequence[CeleryRun]) -> dict[str, Any]:
    """Documents/s over pipeline runs (jobs), with what the ledger says the jobs did."""
    views = [run.job for run in runs]
    return {
        **rate(sum(run.seconds for run in runs), sum(v.documents_done for v in views)),
        "jobs": len(views),
        "documents_failed": sum(v.documents_failed for v in views),
        "batches": sum(v.batches_total for v in views),
        "splits": sum(v.splits for v in views),
        "job_status": sorted({v.status.value for v in views}),
    }
