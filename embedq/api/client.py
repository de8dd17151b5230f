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
from embedq.api.deletion import DeleteRequest, delete_ids, ids_from, submit_delete
from embedq.api.ingest.planning import IngestPlan, plan_ingest
from embedq.api.ingest.producer import IngestRequest, end_abandoned_here, submit
from embedq.api.reindex.versions import ReindexRequest, collect_garbage, rollback, start_reindex
from embedq.api.rerank.submission import RerankRequest, submit_rerank
from embedq.errors import RetryableError
from embedq.models import ModelRegistry
from embedq.search import Hit
from embedq.search import search as search_collection
from embedq.settings import Settings, get_settings
from embedq.store import QdrantStore, connect
from embedq.workers.queues import BatchQueue, make_queue

ProgressCallback = Callable[[ledger.JobView], None]


class JobTimeoutError(RetryableError, TimeoutError):
    """A job did not end within the time given to wait for it (it may still: wait again)."""


class Client:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        if self.settings.database_url is None:  # the embedded ledger file sets itself up
            ledger.migrate(self.settings.ledger_url)
        sessions = ledger.open_ledger(self.settings.ledger_url)
        if self.settings.broker_url is None:  # no worker's reaper: this process is the one
            end_abandoned_here(sessions, idle_seconds=self.settings.abandon_after_seconds)
        return sessions

    @cached_property
    def store(self) -> QdrantStore:
        settings = self.settings
        client = connect(
            url=settings.qdrant_url, path=settings.qdrant_path, api_key=settings.qdrant_api_key
        )
        return QdrantStore(client)

    @cached_property
    def models(self) -> ModelRegistry:
        """This process's models (searches; batches run in-process), under one budget."""
        return ModelRegistry(self.settings.device, self.settings.memory_budget)

    @cached_property
    def queue(self) -> BatchQueue:
        # batches run here share this process's models; under Celery, workers hold theirs
        models = self.models if self.settings.broker_url is None else None
        return make_queue(self.settings, sessions=self.sessions, store=self.store, models=models)

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
        long_text: ledger.LongText | None = None,
        batch_size: int | None = None,
        skip_unchanged: bool = False,
        sync: bool = False,
        force: bool = False,
        on_batch: Callable[[str], None] | None = None,
    ) -> str:
        """Create an ingestion job; its id comes back once every batch is queued (embedded: run).

        ``skip_unchanged``: documents the collection holds exactly as they would be
        written are not embedded again (counted as unchanged). ``sync``: that, and once
        every document has landed, delete the collection's documents that ``files`` no
        longer hold, unless they are more than ``EMBEDQ_SYNC_MAX_DELETE_SHARE`` of it
        (``force``: whatever their share).
        """
        request = self._ingest_request(
            files,
            collection=collection,
            model=model,
            outputs=outputs,
            max_length=max_length,
            long_text=long_text,
            batch_size=batch_size,
            skip_unchanged=skip_unchanged,
            sync=sync,
            force=force,
        )
        return submit(
            request,
            sessions=self.sessions,
            store=self.store,
            queue=self.queue,
            high_water_mark=self.settings.high_water_mark,
            on_batch=on_batch,
        )

    def _ingest_request(
        self,
        files: Sequence[str | Path],
        *,
        collection: str,
        model: str | None,
        outputs: str | None,
        max_length: int | None,
        long_text: ledger.LongText | None,
        batch_size: int | None,
        skip_unchanged: bool,
        sync: bool,
        force: bool,
    ) -> IngestRequest:
        """An ingest request, the settings filling in what is not given."""
        settings = self.settings
        return IngestRequest(
            files=[Path(f) for f in files],
            collection=collection,
            model=model or settings.model,
            outputs=outputs or settings.outputs,
            max_length=max_length or settings.max_length,
            long_text=long_text or settings.long_text,
            batch_size=batch_size or settings.batch_size,
            skip_unchanged=skip_unchanged,
            sync=sync,
            max_delete_share=settings.max_delete_share(force=force),
        )

    def plan_ingest(
        self,
        files: Sequence[str | Path],
        *,
        collection: str,
        model: str | None = None,
        outputs: str | None = None,
        max_length: int | None = None,
        long_text: ledger.LongText | None = None,
        skip_unchanged: bool = False,
        sync: bool = False,
        force: bool = False,
    ) -> IngestPlan:
        """What ``ingest`` with these arguments would embed, skip and delete; changes nothing."""
        request = self._ingest_request(
            files,
            collection=collection,
            model=model,
            outputs=outputs,
            max_length=max_length,
            long_text=long_text,
            batch_size=None,
            skip_unchanged=skip_unchanged,
            sync=sync,
            force=force,
        )
        return plan_ingest(request, store=self.store)

    def delete(
        self,
        collection: str,
        *,
        files: Sequence[str | Path] = (),
        ids: Sequence[str | int] = (),
        on_batch: Callable[[str], None] | None = None,
    ) -> str:
        """Delete documents (every chunk) by id, from ``files`` (one id a line) or ``ids``;
        a job like any other, whose id comes back once its batches are queued."""
        if ids:
            return delete_ids(
                collection,
                ids_from(ids),
                sessions=self.sessions,
                store=self.store,
                queue=self.queue,
                high_water_mark=self.settings.high_water_mark,
                on_batch=on_batch,
            )
        return submit_delete(
            DeleteRequest([Path(f) for f in files], collection),
            sessions=self.sessions,
            store=self.store,
            queue=self.queue,
            high_water_mark=self.settings.high_water_mark,
            on_batch=on_batch,
        )

    def rerank(
        self,
        files: Sequence[str | Path],
        *,
        model: str,
        top_k: int | None = None,
        from_collection: str | None = None,
        candidates: int = 100,
        on_batch: Callable[[str], None] | None = None,
    ) -> str:
        """Create a rerank job; its id comes back once every batch is queued (embedded: run).

        With ``from_collection``, each line is a bare query whose ``candidates`` best
        documents come from a hybrid search of that collection, run by the worker.
        """
        request = RerankRequest(
            files=[Path(f) for f in files],
            model=model,
            top_k=top_k,
            from_collection=from_collection,
            candidates=candidates,
        )
        return submit_rerank(
            request,
            sessions=self.sessions,
            queue=self.queue,
            high_water_mark=self.settings.high_water_mark,
            on_batch=on_batch,
        )

    def results(
        self, job_id: str, *, limit: int = 1000, offset: int = 0
    ) -> list[ledger.RerankResult]:
        """A rerank job's scores and ranks, by query id and then rank."""
        self.status(job_id)  # JobNotFoundError for a job that does not exist
        return ledger.list_results(self.sessions, job_id=job_id, limit=limit, offset=offset)

    def status(self, job_id: str) -> ledger.JobView:
        view = ledger.get_job(self.sessions, job_id=job_id)
        if view is None:
            raise ledger.JobNotFoundError(f"no job {job_id!r}")
        return view

    def jobs(self, *, limit: int = 50) -> list[ledger.JobView]:
        return ledger.list_jobs(self.sessions, limit=limit)

    def failures(
        self, job_id: str, *, limit: int = 100, offset: int = 0
    ) -> list[ledger.FailureView]:
        return ledger.list_failures(self.sessions, job_id=job_id, limit=limit, offset=offset)

    @cached_property
    def reindex_queue(self) -> BatchQueue:
        """Re-index batches' own queue under Celery; in-process, the same one as ingestion."""
        if self.settings.broker_url is None:
            return self.queue
        return make_queue(self.settings, sessions=self.sessions, store=self.store, reindex=True)

    def reindex(
        self,
        collection: str,
        *,
        model: str | None = None,
        outputs: str | None = None,
        max_length: int | None = None,
        long_text: ledger.LongText | None = None,
        drop_old: bool = False,
        on_batch: Callable[[str], None] | None = None,
    ) -> str:
        """Rebuild ``collection`` into a new version and swap to it when done; the job's id."""
        request = ReindexRequest(
            collection=collection,
            model=model,
            outputs=outputs,
            max_length=max_length,
            long_text=long_text,
            batch_size=self.settings.batch_size,
            drop_old=drop_old,
        )
        return start_reindex(
            request,
            sessions=self.sessions,
            store=self.store,
            queue=self.reindex_queue,
            high_water_mark=self.settings.high_water_mark,
            on_batch=on_batch,
        )

    def rollback(self, collection: str) -> str:
        """Point ``collection`` back at the version its last re-index replaced."""
        return rollback(self.sessions, self.store, collection=collection)

    def collect_garbage(self, collection: str) -> list[str]:
        """Drop the versions of ``collection`` nothing uses; returns their names."""
        return collect_garbage(self.sessions, self.store, collection=collection)

    def cancel(self, job_id: str) -> bool:
        return ledger.cancel_job(self.sessions, job_id=job_id)

    def search(
        self,
        collection: str,
        query: str,
        *,
        top_k: int = 10,
        mode: str = "hybrid",
        rerank_model: str | None = None,
    ) -> list[Hit]:
        """The best chunks for ``query``, embedded with the model that built ``collection``."""
        return search_collection(
            self.sessions,
            self.store,
            collection,
            query,
            top_k=top_k,
            mode=mode,
            rerank_model=rerank_model,
            models=self.models,
        )

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
