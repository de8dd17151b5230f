"""``embedq ingest`` stopped by SIGTERM part-way through its input ends its job, saying why.

The input is a named pipe the test writes part of a corpus into and then holds open,
as a producer reading from another program would be when a scheduler stops it.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from embedq import jobs
from embedq.api.client import Client
from embedq.settings import Settings

WRITTEN = 32  # one window of batches of 2 (batching.WINDOW_BATCHES): all of it is sent


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(0.1)


@pytest.fixture
def pipe(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    path = tmp_path / "corpus.jsonl"
    os.mkfifo(path)
    # read-write: opening never blocks, and the pipe has a writer for as long as the test
    # holds it, so the reader waits for more instead of seeing the end of its input
    fd = os.open(path, os.O_RDWR)
    yield path, fd
    os.close(fd)


def ledger_jobs(home: Path) -> list[jobs.JobView]:
    """The jobs in the command's ledger (none while it is still creating the ledger)."""
    if not (home / "ledger.sqlite3").exists():
        return []
    engine = jobs.make_engine(f"sqlite:///{home / 'ledger.sqlite3'}")
    try:
        jobs.check_schema(engine)
        return jobs.list_jobs(jobs.make_sessions(engine))
    except (jobs.SchemaOutOfDateError, jobs.LedgerUnavailableError):
        return []
    finally:
        engine.dispose()


def some_job_done(home: Path, documents: int) -> Callable[[], bool]:
    return lambda: any(job.documents_done == documents for job in ledger_jobs(home))


def test_sigterm_ends_the_job_with_what_was_read(pipe, tmp_path, build_model):
    path, fd = pipe
    home = tmp_path / "home"
    env = {**os.environ, "EMBEDQ_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    for name in ("EMBEDQ_BROKER_URL", "EMBEDQ_DATABASE_URL", "EMBEDQ_QDRANT_URL"):
        env.pop(name, None)
    model = str(build_model(style="bert", m3_heads=False, shape=None))
    command = [sys.executable, "-m", "embedq", "ingest", str(path)]
    options = ["--collection", "c", "--model", model, "--batch-size", "2", "--outputs", "dense"]
    ingest = subprocess.Popen(
        [*command, *options], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        rows = [json.dumps({"id": i, "text": f"document number {i}"}) for i in range(WRITTEN)]
        os.write(fd, ("\n".join(rows) + "\n").encode())
        wait_for(some_job_done(home, WRITTEN), 120, f"{WRITTEN} documents being done")

        ingest.send_signal(signal.SIGTERM)
        _, err = ingest.communicate(timeout=20)  # about 3 s here, most of it the way out
    finally:
        if ingest.poll() is None:
            ingest.kill()
            ingest.communicate()

    assert ingest.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "embedq: stopped by SIGTERM"
    [job] = ledger_jobs(home)
    assert (job.status, job.sealed, job.open_batches) == ("partial", True, 0)
    assert (job.documents_total, job.documents_done) == (WRITTEN, WRITTEN)
    assert job.error == f"intake stopped by SIGTERM after {WRITTEN} documents"
    client = Client(Settings(home=home))
    assert client.store.count(client.store.resolve("c")) == WRITTEN  # one chunk each


def test_a_cut_gzip_file_keeps_what_it_held_and_the_other_files(tmp_path, build_model):
    home = tmp_path / "home"
    env = {**os.environ, "EMBEDQ_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    for name in ("EMBEDQ_BROKER_URL", "EMBEDQ_DATABASE_URL", "EMBEDQ_QDRANT_URL"):
        env.pop(name, None)
    good = tmp_path / "good.jsonl"
    good.write_text(
        "".join(json.dumps({"id": f"g{i}", "text": f"good {i}"}) + "\n" for i in range(20))
    )
    rows = "".join(
        json.dumps({"id": f"z{i}", "text": f"zipped {i} " * 20}) + "\n" for i in range(400)
    )
    whole = gzip.compress(rows.encode())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    model = str(build_model(style="bert", m3_heads=False, shape=None))
    options = ["--collection", "c", "--model", model, "--outputs", "dense", "--wait", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "embedq", "ingest", str(cut), str(good), *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr  # the job ended, but not succeeded
    assert "Traceback" not in done.stderr
    view = json.loads(done.stdout)
    assert (view["status"], view["documents_failed"], view["open_batches"]) == ("partial", 1, 0)
    assert view["documents_done"] == view["documents_total"] - 1 > 20  # both files' documents
    [failure] = Client(Settings(home=home)).failures(view["id"])
    assert failure.reason.startswith("cut.jsonl.gz: unreadable after line ")
    assert failure.line == view["documents_done"] - 20 + 1
