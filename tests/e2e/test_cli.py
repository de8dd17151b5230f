"""The ``embedq`` command as a user runs it, on embedded defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EMBEDQ = Path(sys.executable).parent / "embedq"


@pytest.fixture
def run(tmp_path):
    if not EMBEDQ.exists():
        pytest.fail(f"{EMBEDQ} is missing: `make install` puts the embedq command there")
    env = {**os.environ, "EMBEDQ_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    for name in ("EMBEDQ_BROKER_URL", "EMBEDQ_DATABASE_URL", "EMBEDQ_QDRANT_URL"):
        env.pop(name, None)

    def embedq(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(EMBEDQ), *args], env=env, capture_output=True, text=True, timeout=300
        )

    return embedq


def test_ingest_wait_status_jobs_and_failures(run, tmp_path, scifact_texts, build_model):
    corpus = tmp_path / "in.jsonl"
    rows = [json.dumps({"_id": str(i), "text": t}) for i, t in enumerate(scifact_texts[:30])]
    corpus.write_text("\n".join([*rows, "not json"]) + "\n")
    model = str(build_model(style="xlm-roberta"))
    ingest = run(
        "ingest", str(corpus), "--collection", "papers", "--model", model, "--wait", "--json"
    )
    assert ingest.returncode == 1, ingest.stderr  # one bad line: partial, not succeeded
    job = json.loads(ingest.stdout)
    assert (job["status"], job["documents_done"], job["documents_failed"]) == ("partial", 30, 1)

    status = run("status", job["id"], "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["id"] == job["id"]
    listing = run("jobs")
    assert job["id"] in listing.stdout and "partial" in listing.stdout
    failures = run("failures", job["id"])
    assert "line 31" in failures.stdout and "not JSON" in failures.stdout
    cancel = run("cancel", job["id"])
    assert cancel.returncode == 1 and "already ended" in cancel.stdout


def test_clean_input_exits_zero_and_prints_the_job_id(run, tmp_path, scifact_texts, build_model):
    corpus = tmp_path / "in.jsonl"
    corpus.write_text(
        "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(scifact_texts[:5]))
    )
    model = str(build_model(style="xlm-roberta"))
    plain = run("ingest", str(corpus), "--collection", "c", "--model", model)
    assert plain.returncode == 0, plain.stderr
    assert len(plain.stdout.strip()) == 32  # the job id, and nothing else
    waited = run("ingest", str(corpus), "--collection", "c", "--model", model, "--wait")
    assert waited.returncode == 0, waited.stderr
    assert "succeeded" in waited.stdout


def test_errors_are_one_clear_line(run, tmp_path):
    missing = run("ingest", str(tmp_path / "nope.jsonl"), "--collection", "c")
    assert missing.returncode == 2
    assert missing.stderr.strip().startswith("embedq: cannot read")
    unknown = run("status", "no-such-job")
    assert unknown.returncode == 2 and "no-such-job" in unknown.stderr


def test_reindex_rollback_and_gc(run, tmp_path, scifact_texts, build_model):
    corpus = tmp_path / "in.jsonl"
    corpus.write_text(
        "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(scifact_texts[:8]))
    )
    model = str(build_model(style="bert", m3_heads=False, shape=None))
    assert run("ingest", str(corpus), "--collection", "c", "--model", model).returncode == 0
    reindex = run("reindex", "c", "--max-length", "64", "--wait", "--json")
    assert reindex.returncode == 0, reindex.stderr
    job = json.loads(reindex.stdout)
    assert (job["kind"], job["status"], job["documents_done"]) == ("reindex", "succeeded", 8)
    assert job["options"]["physical_collection"] == "c__v2"
    back = run("rollback", "c")
    assert back.returncode == 0 and "c__v1" in back.stdout
    assert json.loads(run("gc", "c").stdout) == ["c__v2"]
    again = run("rollback", "c")
    assert again.returncode == 2 and "rolled back already" in again.stderr
