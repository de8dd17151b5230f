"""``embedq worker`` as real processes draining a real Redis queue, killed mid-batch and all."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone

import httpx
import pytest
from FlagEmbedding import FlagReranker

from embedq import jobs
from embedq.api.client import Client
from embedq.api.remote import RemoteClient
from tests.e2e.processes import assert_every_document_once, start_worker, write_corpus

TAKEOVER_LIMIT_S = 60


def test_a_worker_process_drains_an_ingestion(
    client, environment, workers, collection, tmp_path, scifact_texts, minilm_path, qdrant_url
):
    ids = write_corpus(tmp_path / "in.jsonl", scifact_texts[:96])
    start_worker(environment, tmp_path / "worker.log", workers)
    job_id = client.ingest(
        [tmp_path / "in.jsonl"],
        collection=collection,
        model=str(minilm_path),
        long_text="truncate",
        batch_size=16,
    )
    view = client.wait(job_id, timeout=240, poll_seconds=0.5)
    assert view.status == "succeeded", (tmp_path / "worker.log").read_text()[-3000:]
    assert (view.documents_done, view.batches_done) == (96, 6)
    assert_every_document_once(qdrant_url, collection, ids)


def test_a_worker_killed_mid_batch_is_taken_over_within_a_minute(
    client, environment, workers, collection, tmp_path, scifact_texts, minilm_path, qdrant_url
):
    ids = write_corpus(tmp_path / "in.jsonl", scifact_texts[:256])
    first = start_worker(environment, tmp_path / "first.log", workers)
    job_id = client.ingest(
        [tmp_path / "in.jsonl"],
        collection=collection,
        model=str(minilm_path),
        long_text="truncate",
        batch_size=32,
    )
    running = wait_for_running_batch(client, job_id, timeout=180)
    os.killpg(first.pid, signal.SIGKILL)
    killed_at = datetime.now(timezone.utc)
    first.wait(timeout=10)
    start_worker(environment, tmp_path / "second.log", workers)
    view = client.wait(job_id, timeout=300, poll_seconds=0.5)
    assert view.status == "succeeded", (tmp_path / "second.log").read_text()[-3000:]
    assert (view.documents_total, view.documents_done, view.documents_failed) == (256, 256, 0)
    assert view.batches_done == 8
    assert_every_document_once(qdrant_url, collection, ids)
    batch = next(b for b in jobs.list_batches(client.sessions, job_id=job_id) if b.id == running)
    assert batch.attempts >= 2
    assert 0 <= (batch.started_at - killed_at).total_seconds() < TAKEOVER_LIMIT_S


def wait_for_running_batch(client: Client, job_id: str, *, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batches = jobs.list_batches(client.sessions, job_id=job_id)
        done = [b for b in batches if b.status == "succeeded"]
        running = [b for b in batches if b.status == "running"]
        if done and running:
            return running[0].id
        time.sleep(0.05)
    raise AssertionError("no batch was seen running after another had finished")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_api(environment: dict, port: int, log_path, started: list) -> str:
    log = open(log_path, "ab")  # noqa: SIM115 - kept open for the process's life
    process = subprocess.Popen(
        [sys.executable, "-m", "embedq.api.cli", "api", "--port", str(port)],
        env={**os.environ, **environment},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    started.append(process)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return url
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"the API did not start: {log_path.read_text()[-2000:]}")


def test_a_job_submitted_through_the_http_api_is_drained_by_a_worker(
    client, environment, workers, collection, tmp_path, scifact_texts, minilm_path, qdrant_url
):
    key = client.create_api_key(tenant="e2e").secret
    url = start_api(environment, free_port(), tmp_path / "api.log", workers)
    start_worker(environment, tmp_path / "worker.log", workers)
    headers = {"Authorization": f"Bearer {key}"}
    ids = [f"doc-{i}" for i in range(48)]
    documents = [{"id": i, "text": t} for i, t in zip(ids, scifact_texts, strict=False)]
    body = {
        "collection": collection,
        "model": str(minilm_path),
        "long_text": "truncate",
        "batch_size": 16,
        "documents": documents[:32],
    }
    created = httpx.post(f"{url}/v1/jobs", json=body, headers=headers, timeout=60)
    assert created.status_code == 201, created.text
    job = created.json()
    more = httpx.post(
        f"{url}/v1/jobs/{job['id']}/batches",
        json={"documents": documents[32:]},
        headers=headers,
        timeout=60,
    )
    assert more.status_code == 202, more.text
    sealed = httpx.post(f"{url}/v1/jobs/{job['id']}/seal", headers=headers, timeout=60)
    assert sealed.status_code == 200

    view, tag, deadline = sealed.json(), "", time.monotonic() + 240
    while view["status"] not in ("succeeded", "partial", "failed", "cancelled"):
        assert time.monotonic() < deadline, view
        polled = httpx.get(
            f"{url}/v1/jobs/{job['id']}?wait=10",
            headers={**headers, "If-None-Match": tag},
            timeout=30,
        )
        if polled.status_code == 200:
            view, tag = polled.json(), polled.headers["etag"]
    assert view["status"] == "succeeded", (tmp_path / "worker.log").read_text()[-3000:]
    assert (view["documents_done"], view["batches_done"], view["eta_seconds"]) == (48, 3, 0.0)
    assert_every_document_once(qdrant_url, collection, ids)


def test_a_worker_serves_ingestion_before_a_waiting_reindex(
    client, environment, workers, collection, tmp_path, scifact_texts, minilm_path, qdrant_url
):
    first = write_corpus(tmp_path / "first.jsonl", scifact_texts[:64])
    start_worker(environment, tmp_path / "worker.log", workers)
    job_id = client.ingest(
        [tmp_path / "first.jsonl"], collection=collection, model=str(minilm_path), batch_size=16
    )
    assert client.wait(job_id, timeout=240, poll_seconds=0.5).status == "succeeded"
    for process in workers:  # no worker while both queues fill up
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)

    reindex_id = client.reindex(collection, long_text="truncate", max_length=128)
    with (tmp_path / "second.jsonl").open("w") as out:
        for i, text in enumerate(scifact_texts[64:96]):
            out.write(json.dumps({"id": f"late-{i}", "text": text}) + "\n")
    ingest_id = client.ingest(
        [tmp_path / "second.jsonl"], collection=collection, model=str(minilm_path), batch_size=8
    )
    start_worker(environment, tmp_path / "worker2.log", workers)
    log = (tmp_path / "worker2.log").read_text
    assert client.wait(ingest_id, timeout=240, poll_seconds=0.5).status == "succeeded", log()
    reindexed = client.wait(reindex_id, timeout=240, poll_seconds=0.5)
    assert reindexed.status == "succeeded", log()[-3000:]

    ingest_batches = jobs.list_batches(client.sessions, job_id=ingest_id)
    reindex_batches = jobs.list_batches(client.sessions, job_id=reindex_id)
    first_reindex = min(b.started_at for b in reindex_batches if b.started_at)
    assert all(b.started_at and b.started_at < first_reindex for b in ingest_batches)
    # the new version holds the late documents too (caught up), and the alias points at it
    assert client.store.resolve(collection) == f"{collection}__v2"
    late = [f"late-{i}" for i in range(32)]
    assert_every_document_once(qdrant_url, collection, first + late)


def test_a_rerank_from_a_collection_over_the_api_is_searched_and_scored_by_a_worker(
    client, environment, workers, collection, tmp_path, scifact_texts, minilm_path, build_model
):
    key = client.create_api_key(tenant="e2e").secret
    remote = RemoteClient(start_api(environment, free_port(), tmp_path / "api.log", workers), key)
    start_worker(environment, tmp_path / "worker.log", workers)
    texts = scifact_texts[:24]
    corpus = tmp_path / "corpus.jsonl"
    write_corpus(corpus, texts)
    built = remote.ingest(
        [corpus], collection=collection, model=str(minilm_path), long_text="truncate"
    )
    assert remote.wait(built, timeout=240).status == "succeeded"
    queries = {f"q{i}": texts[i][:200] for i in (2, 5, 9)}
    with (tmp_path / "queries.jsonl").open("w") as out:
        for query_id, query in queries.items():
            out.write(json.dumps({"query_id": query_id, "query": query}) + "\n")
    reranker = str(build_model(style="xlm-roberta", reranker=True))

    job_id = remote.rerank(
        [tmp_path / "queries.jsonl"], model=reranker, from_collection=collection, candidates=6
    )

    view = remote.wait(job_id, timeout=240)
    assert view.status == "succeeded", (tmp_path / "worker.log").read_text()[-3000:]
    results = remote.results(job_id, limit=100)
    assert len(results) == 18  # six candidates each, one chunk a document
    flag = FlagReranker(reranker, use_fp16=False, devices="cpu")
    for query_id, query in queries.items():
        mine = [r for r in results if r.query_id == query_id]
        assert f"doc-{query_id[1:]}" in {r.candidate_id for r in mine}  # its own document
        pairs = [(query, texts[int(r.candidate_id.removeprefix("doc-"))]) for r in mine]
        expected = flag.compute_score(pairs, max_length=512)
        assert [r.score for r in mine] == pytest.approx(expected, abs=1e-4)
