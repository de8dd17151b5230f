"""Bulk rerank jobs end to end: scores as FlagReranker's, ranks per query, failures with
reasons, thousands of candidates under a small budget, a batch run twice counted once, the
HTTP routes and the command line. Embedded defaults, and Postgres with a Qdrant server."""

from __future__ import annotations

import gzip
import json
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from FlagEmbedding import FlagReranker

from embedq import jobs
from embedq.api.cli import main
from embedq.api.client import Client
from embedq.api.http.app import create_app
from embedq.api.rerank.query_reader import pair_bounded, query_from
from embedq.errors import ModelLoadError
from embedq.jobs.contracts import Candidate, Query
from embedq.settings import Settings
from embedq.workers.context import WorkerContext
from embedq.workers.lifecycle import process_batch

QUERIES = ["what causes cell death", "vitamin D and bone density", "does aspirin help"]


@pytest.fixture(scope="module")
def model(build_model) -> str:
    return str(build_model(style="xlm-roberta", reranker=True))


@pytest.fixture(scope="module")
def rows(scifact_texts) -> list[dict]:
    return [
        {
            "query_id": f"q{n}",
            "query": query,
            "candidates": [
                {"id": f"c{i}", "text": text}
                for i, text in enumerate(scifact_texts[n * 20 : n * 20 + 15])
            ],
        }
        for n, query in enumerate(QUERIES)
    ]


@pytest.fixture(scope="module")
def reference(model, rows) -> dict[tuple[str, str], float]:
    """FlagReranker's own scores for every (query, candidate) pair, fp32 on the CPU."""
    pairs = [(r["query"], c["text"]) for r in rows for c in r["candidates"]]
    keys = [(r["query_id"], c["id"]) for r in rows for c in r["candidates"]]
    scores = FlagReranker(model, use_fp16=False, devices="cpu").compute_score(pairs)
    return dict(zip(keys, scores, strict=True))


BAD_LINES = [
    "not json",
    json.dumps({"query_id": "no-query", "candidates": [{"id": "c", "text": "t"}]}),
    json.dumps({"query_id": "bad-text", "query": "q", "candidates": [{"id": "c", "text": 7}]}),
    json.dumps({"query_id": "q0", "query": "again", "candidates": [{"id": "c", "text": "t"}]}),
]


def write_input(path: Path, rows: list[dict], *, bad: bool = False, gz: bool = False) -> Path:
    lines = [json.dumps(row) for row in rows] + (BAD_LINES if bad else [])
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def payloads(rows: list[dict]) -> list[jobs.Query]:
    """The rows as a rerank batch holds them."""
    return [query_from(row, n, where="row") for n, row in enumerate(rows)]  # type: ignore[misc]


def by_query(results: list[jobs.RerankResult]) -> dict[str, list[jobs.RerankResult]]:
    grouped: dict[str, list[jobs.RerankResult]] = defaultdict(list)
    for result in results:
        grouped[result.query_id].append(result)
    return grouped


def check_ranked(results: list[jobs.RerankResult], reference: dict, *, per_query: int) -> None:
    grouped = by_query(results)
    assert set(grouped) == {f"q{n}" for n in range(len(QUERIES))}
    for query_id, ranked in grouped.items():
        assert [r.rank for r in ranked] == list(range(1, per_query + 1))
        scores = [r.score for r in ranked]
        assert scores == sorted(scores, reverse=True)
        for r in ranked:
            assert r.score == pytest.approx(reference[(query_id, r.candidate_id)], abs=1e-4)
        best = sorted((s for (q, _), s in reference.items() if q == query_id), reverse=True)
        assert scores == pytest.approx(best[:per_query], abs=1e-4)


@pytest.fixture(params=["embedded", "servers"])
def settings(request, tmp_path) -> Settings:
    if request.param == "embedded":
        return Settings(home=tmp_path / "home")
    return Settings(
        home=tmp_path / "home",
        database_url=request.getfixturevalue("postgres_schema_url"),
        qdrant_url=request.getfixturevalue("qdrant_url"),
    )


def new_client(settings: Settings) -> Client:
    client = Client(settings)
    if settings.database_url is not None:
        client.migrate()
    return client


def test_scores_match_flag_reranker_ranks_are_per_query_and_bad_lines_fail(
    settings, tmp_path, model, rows, reference
):
    client = new_client(settings)
    path = write_input(tmp_path / "queries.jsonl.gz", rows, bad=True, gz=True)
    job_id = client.rerank([path], model=model)
    view = client.wait(job_id, timeout=120)
    assert (view.kind, view.status) == ("rerank", jobs.JobStatus.partial)
    assert (view.documents_done, view.documents_failed) == (3, 4)
    check_ranked(client.results(job_id), reference, per_query=15)
    reasons = {f.line: f.reason for f in client.failures(job_id)}
    assert "is not JSON" in reasons[4]
    assert "no query" in reasons[5]
    assert "candidate 'c': text must be a string" in reasons[6]
    assert "duplicate query_id 'q0'" in reasons[7]


def test_top_k_keeps_only_each_querys_best(tmp_path, model, rows, reference):
    client = Client(Settings(home=tmp_path / "home"))
    job_id = client.rerank([write_input(tmp_path / "q.jsonl", rows)], model=model, top_k=4)
    assert client.wait(job_id, timeout=120).status == jobs.JobStatus.succeeded
    check_ranked(client.results(job_id), reference, per_query=4)
    assert client.results(job_id, limit=5, offset=10) == client.results(job_id)[10:12]


def test_a_model_that_is_not_a_reranker_is_refused_before_the_job(tmp_path, build_model, rows):
    client = Client(Settings(home=tmp_path / "home"))
    embedder = build_model(style="xlm-roberta")
    with pytest.raises(ModelLoadError, match="is not a reranker"):
        client.rerank([write_input(tmp_path / "q.jsonl", rows)], model=str(embedder))
    assert client.jobs() == []


def test_a_thousand_candidates_under_a_small_budget_are_all_scored(tmp_path, model, scifact_texts):
    client = Client(Settings(home=tmp_path / "home", memory_budget="24MiB"))
    big = {
        "query_id": "big",
        "query": "does aspirin prevent heart attacks",
        "candidates": [{"id": i, "text": t} for i, t in enumerate(scifact_texts[:600] * 2)],
    }
    small = {"query_id": "small", "query": "q", "candidates": [{"id": "a", "text": "tiny"}]}
    job_id = client.rerank(
        [write_input(tmp_path / "q.jsonl", [small, big, small | {"query_id": "s2"}])], model=model
    )
    view = client.wait(job_id, timeout=300)
    assert (view.status, view.documents_failed) == (jobs.JobStatus.succeeded, 0)
    results = client.results(job_id, limit=5000)
    assert len(by_query(results)["big"]) == 1200
    assert len(results) == 1202


def test_batches_hold_at_most_max_pairs_unless_one_query_has_more():
    def query(n: int) -> Query:
        return Query(f"q{n}", "q", tuple(Candidate(str(i), "t") for i in range(n)))

    sizes = [
        [len(q.candidates) for q in batch]
        for batch in pair_bounded(map(query, [3, 4, 9, 2, 2, 1]), max_pairs=5)
    ]
    assert sizes == [[3], [4], [9], [2, 2, 1]]


def test_a_batch_run_twice_counts_once(tmp_path, model, rows):
    client = Client(Settings(home=tmp_path / "home"))
    job_id = jobs.create_job(client.sessions, kind="rerank", collection="", model=model)
    batch = jobs.add_batch(client.sessions, job_id=job_id, documents=payloads(rows))
    jobs.seal_job(client.sessions, job_id=job_id)
    context = WorkerContext(
        settings=client.settings,
        sessions=client.sessions,
        store=client.store,
        models=client.models,
    )
    assert process_batch(context, batch.id, publish=lambda _: None).status == "succeeded"
    assert process_batch(context, batch.id, publish=lambda _: None).status == "skipped"
    # a worker whose lease was taken over completes late: nothing is written or counted again
    late = jobs.complete_rerank_batch(
        client.sessions,
        batch_id=batch.id,
        results=[
            jobs.RerankResult(query_id=r["query_id"], candidate_id="c0", score=0.0, rank=1)
            for r in rows
        ],
    )
    assert not late.counted
    view = client.status(job_id)
    assert (view.status, view.documents_done, view.batches_done) == (jobs.JobStatus.succeeded, 3, 1)
    assert len(client.results(job_id)) == 45


def test_completing_a_running_rerank_batch_twice_records_its_results_once(tmp_path, rows):
    client = Client(Settings(home=tmp_path / "home"))
    job_id = jobs.create_job(client.sessions, kind="rerank", collection="", model="m")
    batch = jobs.add_batch(client.sessions, job_id=job_id, documents=payloads(rows[:2]))
    assert jobs.claim_batch(client.sessions, batch_id=batch.id, worker="w") is not None
    results = [jobs.RerankResult(query_id="q0", candidate_id="c1", score=0.5, rank=1)]
    failures = [jobs.Failure(doc_id="q1", reason="candidate 'c3' could not be scored: why")]
    first = jobs.complete_rerank_batch(
        client.sessions, batch_id=batch.id, results=results, failures=failures
    )
    second = jobs.complete_rerank_batch(
        client.sessions, batch_id=batch.id, results=results, failures=failures
    )
    assert (first.counted, second.counted) == (True, False)
    assert client.results(job_id) == results
    assert [f.reason for f in client.failures(job_id)] == [failures[0].reason]
    with pytest.raises(jobs.InvalidBatchError):  # every query is done or failed, no fewer
        other = jobs.add_batch(client.sessions, job_id=job_id, documents=payloads(rows[:2]))
        jobs.claim_batch(client.sessions, batch_id=other.id, worker="w")
        jobs.complete_rerank_batch(client.sessions, batch_id=other.id, results=results)


# --- the HTTP API -------------------------------------------------------------------------


@pytest.fixture
def http(tmp_path, postgres_schema_url, qdrant_url):
    settings = Settings(
        home=tmp_path / "home", database_url=postgres_schema_url, qdrant_url=qdrant_url
    )
    client = Client(settings)
    client.migrate()
    keys = {t: client.create_api_key(tenant=t).secret for t in ("acme", "globex")}
    with TestClient(create_app(settings)) as test_client:
        yield test_client, {t: {"Authorization": f"Bearer {k}"} for t, k in keys.items()}


def test_the_api_creates_a_rerank_job_and_pages_its_results(http, model, rows, reference):
    api, headers = http
    body = {"model": model, "top_k": 5, "queries": [*rows, {**rows[0], "query": " "}]}
    response = api.post("/v1/rerank", json=body, headers=headers["acme"])
    assert response.status_code == 201, response.text
    job = response.json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert (job["kind"], job["status"], job["documents_failed"]) == ("rerank", "partial", 1)
    pages, offset = [], 0
    while offset is not None:
        page = api.get(
            f"/v1/jobs/{job['id']}/results",
            params={"limit": 4, "offset": offset},
            headers=headers["acme"],
        ).json()
        pages.append(page)
        offset = page["next_offset"]
    results = [jobs.RerankResult(**r) for page in pages for r in page["results"]]
    assert len(pages) == 4
    check_ranked(results, reference, per_query=5)
    other = api.get(f"/v1/jobs/{job['id']}/results", headers=headers["globex"])
    assert other.status_code == 404
    missing = api.get(f"/v1/jobs/{uuid.uuid4().hex}/results", headers=headers["acme"])
    assert missing.status_code == 404


def test_the_api_refuses_a_model_that_is_not_a_reranker(http, build_model, rows):
    api, headers = http
    body = {"model": str(build_model(style="xlm-roberta")), "queries": rows}
    response = api.post("/v1/rerank", json=body, headers=headers["acme"])
    assert response.status_code == 422
    assert "is not a reranker" in response.json()["detail"]
    too_many = {"model": "m", "queries": [rows[0]] * 1001}
    assert api.post("/v1/rerank", json=too_many, headers=headers["acme"]).status_code == 422


def test_the_api_fills_an_open_rerank_job_in_requests_then_seals_it(
    http, model, build_model, rows, reference
):
    api, headers = http
    acme = headers["acme"]
    created = api.post("/v1/rerank", json={"model": model, "seal": False}, headers=acme)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert created.json()["status"] == "pending"
    first = api.post(f"/v1/jobs/{job_id}/queries", json={"queries": rows[:2]}, headers=acme)
    assert first.status_code == 202, first.text
    assert (first.json()["documents"], first.json()["rejected"]) == (2, 0)
    bare = {"query_id": "bare", "query": "no candidates"}  # only a collection's job takes these
    broken = {"reason": "line 9 is not JSON", "line": 9}
    second = api.post(
        f"/v1/jobs/{job_id}/queries",
        json={"queries": [rows[2], bare], "rejected": [broken]},
        headers=acme,
    )
    assert second.status_code == 202, second.text
    assert (second.json()["documents"], second.json()["rejected"]) == (2, 2)
    assert api.get(f"/v1/jobs/{job_id}", headers=acme).json()["sealed"] is False

    sealed = api.post(f"/v1/jobs/{job_id}/seal", headers=acme)
    assert sealed.status_code == 200, sealed.text
    job = sealed.json()
    assert (job["status"], job["documents_done"], job["documents_failed"]) == ("partial", 3, 2)
    results = api.get(f"/v1/jobs/{job_id}/results", params={"limit": 5000}, headers=acme).json()
    check_ranked([jobs.RerankResult(**r) for r in results["results"]], reference, per_query=15)
    reasons = [
        f["reason"] for f in api.get(f"/v1/jobs/{job_id}/failures", headers=acme).json()["failures"]
    ]
    assert any("candidates must be a non-empty list" in reason for reason in reasons)
    assert "line 9 is not JSON" in reasons

    late = api.post(f"/v1/jobs/{job_id}/queries", json={"queries": rows[:1]}, headers=acme)
    assert late.status_code == 409
    foreign = api.post(
        f"/v1/jobs/{job_id}/queries", json={"queries": rows[:1]}, headers=headers["globex"]
    )
    assert foreign.status_code == 404
    embedder = str(build_model(style="xlm-roberta"))
    ingest = api.post(
        "/v1/jobs", json={"collection": "papers", "model": embedder}, headers=acme
    ).json()
    wrong_kind = api.post(
        f"/v1/jobs/{ingest['id']}/queries", json={"queries": rows[:1]}, headers=acme
    )
    assert wrong_kind.status_code == 409
    documents = api.post(
        f"/v1/jobs/{job_id}/batches", json={"documents": [{"id": "d", "text": "t"}]}, headers=acme
    )
    assert documents.status_code == 409
    assert "add queries at" in documents.json()["detail"]
    empty = api.post(f"/v1/jobs/{job_id}/queries", json={"queries": []}, headers=acme)
    assert empty.status_code == 422


def test_the_api_takes_candidates_only_from_a_collection_of_the_callers_own(
    http, model, build_model, scifact_texts
):
    api, headers = http
    documents = [{"id": f"d{i}", "text": text} for i, text in enumerate(scifact_texts[:12])]
    ingest = {
        "collection": "acme_papers",
        "model": str(build_model(style="xlm-roberta")),
        "outputs": "dense,sparse",
        "long_text": "truncate",
        "documents": documents,
        "seal": True,
    }
    built = api.post("/v1/jobs", json=ingest, headers=headers["acme"])
    assert built.json()["status"] == "succeeded", built.text
    query = {"query_id": "q", "query": scifact_texts[4][:200]}
    listed = {**query, "query_id": "listed", "candidates": [{"id": "c", "text": "t"}]}
    body = {
        "model": model,
        "from_collection": "acme_papers",
        "candidates": 4,
        "queries": [query, listed],
    }

    response = api.post("/v1/rerank", json=body, headers=headers["acme"])
    assert response.status_code == 201, response.text
    job = response.json()
    assert (job["status"], job["documents_done"], job["documents_failed"]) == ("partial", 1, 1)
    results = api.get(f"/v1/jobs/{job['id']}/results", headers=headers["acme"]).json()["results"]
    assert len(results) == 4 and "d4" in {r["candidate_id"] for r in results}
    failures = api.get(f"/v1/jobs/{job['id']}/failures", headers=headers["acme"]).json()
    assert "must not list its own" in failures["failures"][0]["reason"]

    # another tenant's collection is answered as a missing one; a never-written name is refused
    assert api.post("/v1/rerank", json=body, headers=headers["globex"]).status_code == 404
    unknown = api.post(
        "/v1/rerank", json={**body, "from_collection": "nothing_here"}, headers=headers["acme"]
    )
    assert unknown.status_code == 404
    too_many = api.post("/v1/rerank", json={**body, "candidates": 10_001}, headers=headers["acme"])
    assert too_many.status_code == 422


# --- the command line ---------------------------------------------------------------------


def test_the_command_line_reranks_waits_and_writes_results(
    tmp_path, monkeypatch, capsys, model, rows, reference
):
    for name in ("EMBEDQ_API_URL", "EMBEDQ_BROKER_URL", "EMBEDQ_DATABASE_URL", "EMBEDQ_QDRANT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EMBEDQ_HOME", str(tmp_path / "home"))
    path = write_input(tmp_path / "q.jsonl", rows)
    assert main(["rerank", str(path), "--model", model, "--top-k", "3", "--wait", "--json"]) == 0
    job = json.loads(capsys.readouterr().out)
    assert (job["kind"], job["status"]) == ("rerank", "succeeded")
    out = tmp_path / "results.jsonl"
    assert main(["results", job["id"], "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert set(lines[0]) == {"query_id", "candidate_id", "score", "rank"}
    check_ranked([jobs.RerankResult(**line) for line in lines], reference, per_query=3)
    bad = write_input(tmp_path / "bad.jsonl", rows, bad=True)
    # a fresh home: this process still holds the first one's local Qdrant folder
    monkeypatch.setenv("EMBEDQ_HOME", str(tmp_path / "home2"))
    assert main(["rerank", str(bad), "--model", model, "--wait"]) == 1  # partial
