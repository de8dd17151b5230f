"""Pipeline recovery: OOM splits a batch, a permanent error fails it, no rerun duplicates."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
import torch

from embedq import jobs
from embedq.api.client import Client
from embedq.errors import ModelLoadError
from embedq.models import Chunk, EmbeddingResult, GivenModels
from embedq.settings import Settings
from embedq.store import IncompatibleCollectionError
from embedq.workers.context import WorkerContext
from embedq.workers.lifecycle import process_batch
from embedq.workers.queues import InProcessQueue


class FittingEmbedder:
    """A stand-in model that runs out of memory on more than ``fits`` texts at once."""

    def __init__(self, fits: int) -> None:
        self.fits = fits
        self.calls: list[int] = []

    def embed(self, texts, *, on_progress=None):
        self.calls.append(len(texts))
        if len(texts) > self.fits:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return [EmbeddingResult(chunks=[_chunk(text)]) for text in texts]


def _chunk(text: str) -> Chunk:
    rng = np.random.default_rng(len(text))
    return Chunk(
        dense=rng.normal(size=32).astype(np.float32),  # the tiny models' hidden size
        sparse=None,
        colbert=None,
        start=0,
        end=len(text),
        num_tokens=len(text.split()),
    )


@pytest.fixture
def client(tmp_path) -> Client:
    return Client(Settings(home=tmp_path / "home"))


def corpus_file(path, count: int):
    with path.open("w") as out:
        for i in range(count):
            out.write(json.dumps({"id": f"doc-{i}", "text": f"document number {i} " * (i % 7 + 1)}))
            out.write("\n")
    return path


def run_with(client: Client, embedder) -> None:
    """Replace the client's in-process queue by one whose worker uses ``embedder``."""
    context = WorkerContext(
        settings=client.settings,
        sessions=client.sessions,
        store=client.store,
        models=GivenModels(embedder),
    )
    client.__dict__["queue"] = InProcessQueue(
        lambda batch_id, publish: process_batch(context, batch_id, publish=publish)
    )


def test_a_batch_that_runs_out_of_memory_is_split_until_it_fits(client, tmp_path, build_model):
    embedder = FittingEmbedder(fits=3)
    run_with(client, embedder)
    path = corpus_file(tmp_path / "in.jsonl", 20)
    model = str(build_model(style="bert", m3_heads=False, shape=None))
    job_id = client.ingest([path], collection="c", model=model, batch_size=16, outputs="dense")
    view = client.status(job_id)
    assert view.status == "succeeded"
    assert view.documents_done == 20
    assert view.splits > 0
    batches = jobs.list_batches(client.sessions, job_id=job_id)
    split = [b for b in batches if b.status == "split"]
    children = [b for b in batches if b.parent_id is not None]
    assert split and len(children) == 2 * len(split)
    assert max(c for c in embedder.calls if c <= 3) <= 3
    assert client.store.count(client.store.resolve("c")) == 20


def test_a_single_document_that_never_fits_fails_alone(client, tmp_path, build_model):
    run_with(client, FittingEmbedder(fits=0))
    path = corpus_file(tmp_path / "in.jsonl", 2)
    model = str(build_model(style="bert", m3_heads=False, shape=None))
    job_id = client.ingest([path], collection="c", model=model, batch_size=2, outputs="dense")
    view = client.status(job_id)
    assert (view.status, view.documents_failed) == ("failed", 2)
    reasons = {f.reason for f in client.failures(job_id)}
    assert reasons == {"out of memory even as a batch of one document"}


def test_a_permanent_error_fails_the_batch_with_its_reason(client, tmp_path, build_model):
    class Broken:
        def embed(self, texts, *, on_progress=None):
            raise ModelLoadError("weights are corrupt")

    run_with(client, Broken())
    path = corpus_file(tmp_path / "in.jsonl", 5)
    model = str(build_model(style="bert", m3_heads=False, shape=None))
    job_id = client.ingest([path], collection="c", model=model, outputs="dense")
    view = client.status(job_id)
    assert (view.status, view.documents_failed) == ("failed", 5)
    assert {f.reason for f in client.failures(job_id)} == {"weights are corrupt"}


def test_an_incompatible_collection_rejects_the_job_before_any_work(client, tmp_path, build_model):
    path = corpus_file(tmp_path / "in.jsonl", 3)
    small = str(build_model(style="bert", m3_heads=False, shape=None))
    client.ingest([path], collection="c", model=small, outputs="dense")
    m3 = str(build_model(style="xlm-roberta"))
    with pytest.raises(IncompatibleCollectionError, match="sparse"):
        client.ingest([path], collection="c", model=m3)
    assert len(client.jobs()) == 1


def test_running_a_batch_twice_counts_it_once(client, tmp_path, build_model):
    embedder = FittingEmbedder(fits=100)
    run_with(client, embedder)
    path = corpus_file(tmp_path / "in.jsonl", 6)
    model = str(build_model(style="bert", m3_heads=False, shape=None))
    job_id = client.ingest([path], collection="c", model=model, outputs="dense")
    [batch] = jobs.list_batches(client.sessions, job_id=job_id)
    context = WorkerContext(
        settings=client.settings,
        sessions=client.sessions,
        store=client.store,
        models=GivenModels(embedder),
    )
    again = process_batch(context, batch.id, publish=lambda _: None)
    assert again.status == "skipped"
    view = client.status(job_id)
    assert (view.documents_done, view.batches_done) == (6, 1)


class TakenOverMeanwhile(FittingEmbedder):
    """Embeds, but meanwhile this worker was cut off and another took its batch over."""

    def __init__(self, sessions) -> None:
        super().__init__(fits=100)
        self.sessions = sessions

    def embed(self, texts, *, on_progress=None):
        [job] = jobs.list_jobs(self.sessions)
        for batch in jobs.list_batches(self.sessions, job_id=job.id):
            if batch.status == "running":  # its lease ran out; a reaper gave it to another
                later = batch.lease_expires_at + timedelta(seconds=1)
                assert jobs.claim_batch(self.sessions, batch_id=batch.id, worker="other", now=later)
        return super().embed(texts)


def test_a_batch_taken_over_while_it_embedded_is_dropped_and_nothing_written(
    client, tmp_path, build_model
):
    run_with(client, TakenOverMeanwhile(client.sessions))
    path = corpus_file(tmp_path / "in.jsonl", 4)
    model = str(build_model(style="bert", m3_heads=False, shape=None))
    job_id = client.ingest([path], collection="c", model=model, outputs="dense")

    [batch] = jobs.list_batches(client.sessions, job_id=job_id)
    assert (batch.status, batch.lease_owner, batch.attempts) == ("running", "other", 2)
    view = client.status(job_id)
    assert view.documents_done == 0
    physical = view.options.physical_collection
    assert client.store.client.count(physical, exact=True).count == 0
