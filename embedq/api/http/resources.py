"""What the API's routes work on: the ledger, Qdrant and the queue, and where calls run.

Ledger, Qdrant and broker calls block, so routes run them off the event loop. With
a Qdrant server they run on a thread pool; a local Qdrant folder (embedded mode)
admits one thread, so there every call runs on one dedicated thread, in turn.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from embedq import jobs
from embedq.api.client import Client
from embedq.settings import Settings
from embedq.workers.reaper import end_abandoned

T = TypeVar("T")


class Backend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = Client(settings)
        serial = settings.qdrant_url is None
        self._executor = ThreadPoolExecutor(
            max_workers=1 if serial else 16, thread_name_prefix="embedq-api"
        )

    async def run(self, function: Callable[..., T], *args: object, **kwargs: object) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(function, *args, **kwargs)
        return await loop.run_in_executor(self._executor, call)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def end_abandoned_jobs(self) -> list[str]:
        """End the jobs whose producers walked away, as a worker's reaper does."""
        client = self.client
        return end_abandoned(
            client.sessions,
            client.store,
            client.reindex_queue.publish,
            idle_seconds=self.settings.abandon_after_seconds,
        )

    # --- readiness: each answers None when fine, else what is wrong ---------------------

    def ledger_problem(self) -> str | None:
        try:
            jobs.list_jobs(self.client.sessions, limit=1)
        except Exception as error:  # any failure means not ready; say which
            return f"{type(error).__name__}: {error}"
        return None

    def qdrant_problem(self) -> str | None:
        try:
            self.client.store.client.get_collections()
        except Exception as error:
            return f"{type(error).__name__}: {error}"
        return None

    def broker_problem(self) -> str | None:
        if self.settings.broker_url is None:
            return None  # batches run in this process: nothing to reach
        try:
            self.client.queue.depth()
        except Exception as error:
            return f"{type(error).__name__}: {error}"
        return None
