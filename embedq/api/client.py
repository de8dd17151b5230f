"""The Python client: the same operations as the command line, talking to the ledger directly.

Builds its connections from settings on first use. On embedded defaults the
ledger file is migrated on first use and batches run in this process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from embedq import jobs as ledger
from embedq.api.producer import IngestRequest, submit
from embedq.settings import Settings, get_settings
from embedq.workers.qdrant_store import QdrantStore, connect
from embedq.workers.queues import BatchQueue, make_queue

ProgressCallback = Callable[[ledger.JobView], None]


class JobTimeoutError(TimeoutError):
    """A job did not end within the time given to wait for it."""


class Client:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        if self.settings.database_url is None:  # the embedded ledger file sets itself up
            ledger.migrate(self.settings.ledger_url)
        return ledger.open_ledger(self.settings.ledger_url)

    @cached_property
    def store(self) -> QdrantStore:
        settings = self.settings
        client = connect(
            url=settings.qdrant_url, path=settings.qdrant_path, api_key=settings.qdrant_api_key
        )
        return QdrantStore(client)

    @cached_property
    def queue(self) -> BatchQueue:
        return make_queue(self.settings, sessions=self.sessions, store=self.store)

    def migrate(self) -> None:
        ledger.migrate(ledger.make_engine(self.settings.ledger_url))

    def ingest(
        self,
        files: Sequence[str | Path],
        *,
        collection: str,
        model: str | None = None,
        outputs: str | None = None,
        max_length: int | None = None,
        long_text: str | None = None,
        batch_size: int | None = None,
        on_batch: Callable[[str], None] | None = None,
    ) -> str:
        """Create an ingestion job; its id comes back once every batch is queued (embedded: run)."""
        settings = self.settings
        request = IngestRequest(
            files=[Path(f) for f in files],
            collection=collection,
            model=model or settings.model,
            outputs=outputs or settings.outputs,
            max_length=max_length or settings.max_length,
            long_text=long_text or settings.long_text,
            batch_size=batch_size or settings.batch_size,
        )
        return submit(
            request,
            sessions=self.sessions,
            store=self.store,
            queue=self.queue,
            high_water_mark=settings.high_water_mark,
            on_batch=on_batch,
        )

    def status(self, job_id: str) -> ledger.JobView:
        view = ledger.get_job(self.sessions, job_id=job_id)
        if view is None:
            raise KeyError(f"no job {job_id!r}")
        return view

    def jobs(self, *, limit: int = 50) -> list[ledger.JobView]:
        return ledger.list_jobs(self.sessions, limit=limit)

    def failures(
        self, job_id: str, *, limit: int = 100, offset: int = 0
    ) -> list[ledger.FailureView]:
        return ledger.list_failures(self.sessions, job_id=job_id, limit=limit, offset=offset)

    def cancel(self, job_id: str) -> bool:
        return ledger.cancel_job(self.sessions, job_id=job_id)

    def create_api_key(self, *, tenant: str, name: str | None = None) -> ledger.NewApiKey:
        """A new key for ``tenant``; its secret is in the result and nowhere else."""
        return ledger.create_api_key(self.sessions, tenant=tenant, name=name)

    def revoke_api_key(self, key_id: str) -> bool:
        return ledger.revoke_api_key(self.sessions, key_id=key_id)

    def api_keys(self, *, tenant: str | None = None) -> list[ledger.ApiKeyView]:
        return ledger.list_api_keys(self.sessions, tenant=tenant)

    def wait(
        self,
        job_id: str,
        *,
        poll_seconds: float = 1.0,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> ledger.JobView:
        """Poll until the job ends; returns its final view."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            view = self.status(job_id)
            if on_progress is not None:
                on_progress(view)
            if view.status in ledger.JOB_ENDED:
                return view
            if deadline is not None and time.monotonic() > deadline:
                raise JobTimeoutError(f"job {job_id} still {view.status} after {timeout} s")
            time.sleep(poll_seconds)
