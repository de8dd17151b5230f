"""Starting ``embedq worker`` processes and checking what they wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from qdrant_client import QdrantClient

from embedq.store import point_id


def start_worker(environment: dict, log_path, started: list) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - kept open for the process's life
    process = subprocess.Popen(
        [sys.executable, "-m", "embedq.api.cli", "worker", "--loglevel=INFO"],
        env={**os.environ, **environment},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: SIGKILL reaches the pool child too
    )
    started.append(process)
    return process


def write_corpus(path, texts: list[str]) -> list[str]:
    ids = [f"doc-{i}" for i in range(len(texts))]
    with path.open("w") as out:
        for doc_id, text in zip(ids, texts, strict=True):
            out.write(json.dumps({"id": doc_id, "text": text}) + "\n")
    return ids


def assert_every_document_once(qdrant_url: str, collection: str, ids: list[str]) -> None:
    qdrant = QdrantClient(url=qdrant_url)
    assert qdrant.count(collection, exact=True).count == len(ids)
    records = qdrant.retrieve(collection, ids=[point_id(i, 0) for i in ids])
    assert sorted(r.payload["doc_id"] for r in records) == sorted(ids)
