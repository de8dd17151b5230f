"""Exact updates, deletes and syncs with real ``embedq worker`` processes, a crash included.

Postgres, Redis and the Qdrant server are real; so are the worker processes, and the
``embedq`` commands run as a user runs them.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from embedq.api.client import Client
from embedq.faults import CRASH_AT
from tests.e2e.processes import start_worker

MAX_LENGTH = 32  # MiniLM tokens per chunk: a few hundred words make dozens of chunks
WAIT_S = 240


def stored_chunks(qdrant_url: str, collection: str, doc_id: str) -> list[dict]:
    records, _ = QdrantClient(url=qdrant_url).scroll(
        collection,
        scroll_filter=qm.Filter(
            must=[qm.FieldCondition(key="doc_id", match=qm.MatchValue(value=doc_id))]
        ),
        limit=1000,
        with_payload=True,
    )
    return sorted((r.payload or {} for r in records), key=lambda p: p["chunk"])


def stored_ids(qdrant_url: str, collection: str) -> list[str]:
    records, _ = QdrantClient(url=qdrant_url).scroll(
        collection,
        scroll_filter=qm.Filter(
            must=[qm.FieldCondition(key="chunk", match=qm.MatchValue(value=0))]
        ),
        limit=10_000,
        with_payload=["doc_id"],
    )
    return sorted(str((r.payload or {})["doc_id"]) for r in records)


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def wait_for_line(log: Path, text: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in {log}")


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=20)


def test_a_crash_between_upsert_and_clean_up_still_leaves_exactly_the_new_chunks(
    client: Client, environment, workers, collection, tmp_path, pep_texts, minilm_path, qdrant_url
):
    long_text = " ".join(pep_texts[0].split()[:700])
    options = {"collection": collection, "model": str(minilm_path), "max_length": MAX_LENGTH}
    first = start_worker(environment, tmp_path / "first.log", workers)
    job = client.ingest(
        [write(tmp_path / "v1.jsonl", [{"id": "pep", "text": long_text}])], **options
    )
    assert client.wait(job, timeout=WAIT_S, poll_seconds=0.5).status == "succeeded"
    old_chunks = len(stored_chunks(qdrant_url, collection, "pep"))
    assert old_chunks > 10
    stop(first)

    # this worker dies (SIGKILL) after writing the new chunk, before removing the old ones
    crashing = start_worker(
        {**environment, CRASH_AT: "after-upsert"}, tmp_path / "crash.log", workers
    )
    short = write(tmp_path / "v2.jsonl", [{"id": "pep", "text": "Now it is short."}])
    job = client.ingest([short], **options)
    wait_for_line(tmp_path / "crash.log", "crash point 'after-upsert' reached", timeout=WAIT_S)
    stop(crashing)  # its pool would start a new child, which would crash the same way
    mixed = stored_chunks(qdrant_url, collection, "pep")
    assert (mixed[0]["text"], mixed[0]["job_id"], len(mixed)) == (
        "Now it is short.",
        job,
        old_chunks,
    )

    start_worker(environment, tmp_path / "after.log", workers)
    view = client.wait(job, timeout=WAIT_S, poll_seconds=0.5)
    assert view.status == "succeeded", (tmp_path / "after.log").read_text()[-3000:]
    points = stored_chunks(qdrant_url, collection, "pep")
    assert [(p["chunk"], p["text"], p["job_id"]) for p in points] == [(0, "Now it is short.", job)]

    # and longer again, with nothing in the way: exactly the new chunks, all of this job's
    middle = " ".join(long_text.split()[:120])
    job = client.ingest([write(tmp_path / "v3.jsonl", [{"id": "pep", "text": middle}])], **options)
    assert client.wait(job, timeout=WAIT_S, poll_seconds=0.5).status == "succeeded"
    points = stored_chunks(qdrant_url, collection, "pep")
    assert 1 < len(points) < old_chunks
    assert [(p["chunk"], p["job_id"]) for p in points] == [(i, job) for i in range(len(points))]


def embedq(environment: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "embedq", *args],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )


def test_delete_and_sync_from_the_command_line(
    client, environment, workers, collection, tmp_path, scifact_texts, minilm_path, qdrant_url
):
    start_worker(environment, tmp_path / "worker.log", workers)
    rows = [{"id": f"d{i}", "text": text} for i, text in enumerate(scifact_texts[:30])]
    common = ["--collection", collection, "--model", str(minilm_path), "--long-text", "truncate"]
    first = client.ingest(
        [write(tmp_path / "a.jsonl", rows)],
        collection=collection,
        model=str(minilm_path),
        long_text="truncate",
    )
    assert client.wait(first, timeout=WAIT_S, poll_seconds=0.5).status == "succeeded"

    (tmp_path / "ids.txt").write_text("d0\nd1\n")
    deleted = embedq(
        environment, "delete", collection, "--ids", str(tmp_path / "ids.txt"), "--wait"
    )
    assert deleted.returncode == 0, deleted.stderr
    assert "2 deleted" in deleted.stdout
    assert stored_ids(qdrant_url, collection) == sorted(f"d{i}" for i in range(2, 30))

    # the input now lacks d2..d4, changes d5 and adds a new document
    rows = [*rows[5:], {"id": "new", "text": "A document that was not there before."}]
    rows[0] = {"id": "d5", "text": "Revised: " + rows[0]["text"]}
    path = str(write(tmp_path / "b.jsonl", rows))
    plan = embedq(environment, "ingest", path, *common, "--sync", "--dry-run", "--json")
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    assert (sorted(planned["embed"]), sorted(planned["delete"])) == (
        ["d5", "new"],
        ["d2", "d3", "d4"],
    )
    assert len(planned["skip"]) == 24
    assert stored_ids(qdrant_url, collection) == sorted(f"d{i}" for i in range(2, 30))

    synced = embedq(environment, "ingest", path, *common, "--sync", "--wait", "--json")
    assert synced.returncode == 0, synced.stderr + (tmp_path / "worker.log").read_text()[-3000:]
    view = json.loads(synced.stdout)
    assert (view["documents_done"], view["documents_unchanged"], view["documents_deleted"]) == (
        2,
        24,
        3,
    )
    assert stored_ids(qdrant_url, collection) == sorted([*(f"d{i}" for i in range(5, 30)), "new"])


def test_poison_documents_fail_alone_and_their_neighbours_land(
    client, environment, workers, collection, tmp_path, scifact_texts, minilm_path, qdrant_url
):
    start_worker(environment, tmp_path / "worker.log", workers)
    good = [{"id": f"ok{i}", "text": text} for i, text in enumerate(scifact_texts[:20])]
    lines = [json.dumps(row) for row in good[:10]]
    lines.append(
        '{"id": "deep", "text": "nested", "metadata": ' + '{"a": ' * 3000 + "1" + "}" * 3001
    )
    lines.append(json.dumps({"id": "huge-int", "text": "past 64 bits", "metadata": {"n": 2**70}}))
    lines.append(json.dumps({"id": "nan", "text": "not a number", "metadata": {"x": float("nan")}}))
    lines.append('{"id": "surrogate", "text": "lone \\ud800 surrogate"}')
    lines += [json.dumps(row) for row in good[10:]]
    path = tmp_path / "poison.jsonl"
    path.write_text("\n".join(lines) + "\n")
    job = client.ingest([path], collection=collection, model=str(minilm_path), long_text="truncate")
    view = client.wait(job, timeout=WAIT_S, poll_seconds=0.5)
    assert (view.status, view.documents_done, view.documents_failed) == ("partial", 20, 4)
    reasons = {failure.doc_id or failure.line: failure.reason for failure in client.failures(job)}
    # the deep line cannot even be read far enough to learn its id: it is named by its line
    assert set(reasons) == {11, "huge-int", "nan", "surrogate"}
    assert "too deep" in reasons[11] and "64-bit" in reasons["huge-int"]
    assert stored_ids(qdrant_url, collection) == sorted(row["id"] for row in good)


def test_a_cut_gzip_file_and_a_sigterm_leave_no_job_open(
    client, environment, workers, collection, tmp_path, minilm_path, qdrant_url
):
    start_worker(environment, tmp_path / "worker.log", workers)
    good = write(tmp_path / "good.jsonl", [{"id": f"g{i}", "text": f"good {i}"} for i in range(20)])
    rows = "".join(
        json.dumps({"id": f"z{i}", "text": f"zipped {i} " * 20}) + "\n" for i in range(400)
    )
    whole = gzip.compress(rows.encode())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    common = ["--collection", collection, "--model", str(minilm_path), "--long-text", "truncate"]
    done = embedq(environment, "ingest", str(cut), str(good), *common, "--wait", "--json")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    view = json.loads(done.stdout)
    assert (view["status"], view["documents_failed"], view["open_batches"]) == ("partial", 1, 0)
    [failure] = client.failures(view["id"])
    assert failure.reason.startswith("cut.jsonl.gz: unreadable after line ")
    assert len(stored_ids(qdrant_url, collection)) == view["documents_done"] > 20

    # a producer reading a pipe, stopped by SIGTERM: what it sent lands, the job ends
    pipe = tmp_path / "pipe.jsonl"
    os.mkfifo(pipe)
    holder = os.open(pipe, os.O_RDWR)  # a writer that never finishes: the reader waits
    producer = subprocess.Popen(
        [sys.executable, "-m", "embedq", "ingest", str(pipe), *common, "--batch-size", "4"],
        env={**os.environ, **environment},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sent = [json.dumps({"id": f"p{i}", "text": f"piped {i}"}) for i in range(64)]
        os.write(holder, ("\n".join(sent) + "\n").encode())
        deadline = time.monotonic() + WAIT_S
        while not any(j.documents_total == 64 for j in client.jobs(limit=5)):
            assert time.monotonic() < deadline, "the piped documents never reached the ledger"
            time.sleep(0.2)
        producer.send_signal(signal.SIGTERM)
        _, err = producer.communicate(timeout=30)
    finally:
        os.close(holder)
        if producer.poll() is None:
            producer.kill()
    assert producer.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    [job] = [j for j in client.jobs(limit=5) if j.documents_total == 64]
    view = client.wait(job.id, timeout=WAIT_S, poll_seconds=0.5)
    assert (view.status, view.documents_done) == ("partial", 64)
    assert view.error == "intake stopped by SIGTERM after 64 documents"
