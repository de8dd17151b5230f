"""Reading a worker's log: when a line was written (its own timestamp), and waiting for one."""

from __future__ import annotations

import re
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

# "2026-12-06 05:34:03,647 embedq.workers.leases WARNING: ...", in the worker's local time
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", re.MULTILINE)
POLL_S = 0.02
TAIL_CHARS = 3000


class WorkerLogError(RuntimeError):
    """The line never came: the worker exited, or the time ran out."""


def written_at(line: str) -> datetime:
    """When the worker wrote ``line``, in UTC."""
    found = STAMP.match(line)
    if found is None:
        raise ValueError(f"no timestamp at the start of {line!r}")
    local = datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S,%f")
    return local.astimezone(timezone.utc)  # a naive time is taken as local, as logging wrote it


def line_with(log: Path, text: str) -> str | None:
    """The first line of the log holding ``text``, if one does yet."""
    for line in log.read_text(errors="replace").splitlines():
        if text in line:
            return line
    return None


def wait_for_line(log: Path, text: str, *, worker: subprocess.Popen[bytes], timeout: float) -> str:
    """The first line holding ``text``, once the worker writes it."""
    deadline = time.monotonic() + timeout
    while (line := line_with(log, text)) is None:
        if worker.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-TAIL_CHARS:]
            raise WorkerLogError(f"no {text!r} in the worker's log; it ends: {tail}")
        time.sleep(POLL_S)
    return line
