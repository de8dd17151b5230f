"""Cancelling a job stops its running batch in a real ``embedq worker``, mid-batch.

The worker renews its lease every third of it; the first renewal after the cancel is
refused, and the batch stops at its next micro-batch, writing nothing. Each micro-batch
is made slow (``EMBEDQ_SLOW_AT=micro-batch``), so the batch would embed for far longer
than the time it is given to stop if the cancel went unnoticed until its write.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from embedq import jobs
from embedq.faults import SLOW_AT, SLOW_SECONDS
from embedq.workers.cancellation import MICRO_BATCH
from tests.e2e.conftest import LEASE_SECONDS
from tests.e2e.processes import assert_every_document_once, start_worker, write_corpus

MICRO_BATCH_S = 0.5
# with max_length 128, 16 documents a micro-batch: 30 of them, some 15 s uncancelled
DOCUMENTS = 480
STOP_LIMIT_S = LEASE_SECONDS / 3 + 5  # the next renewal, then under 5 s
STOPPED = re.compile(r"batch (\w+) dropped, nothing written: .* stopped after (\d+) of (\d+)")


def test_a_cancelled_jobs_batch_stops_mid_way_and_the_worker_goes_on(
    client, environment, workers, collection, tmp_path, scifact_texts, build_model, qdrant_url
):
    log = tmp_path / "worker.log"
    slowed = {**environment, SLOW_AT: MICRO_BATCH, SLOW_SECONDS: str(MICRO_BATCH_S)}
    worker = start_worker({**slowed, "PYTHONUNBUFFERED": "1"}, log, workers)
    model = str(build_model(style="bert", m3_heads=False, shape=None))
    texts = (scifact_texts * 2)[:DOCUMENTS]
    write_corpus(tmp_path / "big.jsonl", texts)
    options = {"model": model, "long_text": "truncate", "max_length": 128}
    job_id = client.ingest(
        [tmp_path / "big.jsonl"], collection=collection, batch_size=DOCUMENTS, **options
    )
    wait_for(log, f"slow point '{MICRO_BATCH}' reached", timeout=180)  # mid-way through it

    assert client.cancel(job_id)
    cancelled = time.monotonic()
    batch_id, done, total = stopped_batch(log, timeout=STOP_LIMIT_S + 30)
    took = time.monotonic() - cancelled

    assert took < STOP_LIMIT_S, f"stopped {took:.1f} s after the cancel"
    assert 0 < done < total, f"stopped after {done} of {total} inputs"
    assert [batch.id for batch in jobs.list_batches(client.sessions, job_id=job_id)] == [batch_id]
    view = client.status(job_id)
    assert (view.status, view.documents_done) == ("cancelled", 0)

    after = [f"next-{i}" for i in range(16)]
    with (tmp_path / "next.jsonl").open("w") as out:
        for doc_id, text in zip(after, texts, strict=False):
            out.write(json.dumps({"id": doc_id, "text": text}) + "\n")
    next_id = client.ingest([tmp_path / "next.jsonl"], collection=collection, **options)
    view = client.wait(next_id, timeout=120, poll_seconds=0.5)
    assert view.status == "succeeded", log.read_text()[-3000:]
    assert worker.poll() is None
    # the collection holds the next job's documents and nothing of the cancelled batch
    assert_every_document_once(qdrant_url, collection, after)


def wait_for(log: Path, text: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"no {text!r} in: {log.read_text()[-3000:]}"
        time.sleep(0.05)


def stopped_batch(log: Path, *, timeout: float) -> tuple[str, int, int]:
    """The batch the worker dropped, and how many of its inputs it had embedded."""
    deadline = time.monotonic() + timeout
    while (found := STOPPED.search(log.read_text(errors="replace"))) is None:
        assert time.monotonic() < deadline, f"the batch did not stop: {log.read_text()[-3000:]}"
        time.sleep(0.02)
    return found[1], int(found[2]), int(found[3])
