"""Fault points: named places where a process can be made to die, or to stall, to prove
what a crash or a lost host leaves.

Set ``EMBEDQ_CRASH_AT`` to a point's name and the process kills itself (SIGKILL, no
clean-up of any kind) when it gets there, as a power cut or the OOM killer would. The
fault tests use it to stop a worker between two steps that must survive being
separated, such as a batch's upsert and its clean-up.

Set ``EMBEDQ_STALL_AT`` to a point's name and the process, the first time it gets there,
creates the file ``EMBEDQ_STALL_FILE`` and waits ``EMBEDQ_STALL_SECONDS`` (10): long
enough for a test to cut its host off the network at exactly that moment, such as
inside a ledger transaction that holds a job's lock.

Set ``EMBEDQ_SLOW_AT`` to a point's name and the process waits ``EMBEDQ_SLOW_SECONDS``
(1) every time it gets there: a step made slow, such as each micro-batch of a worker's
model, so a test can act while a batch is surely under way. Unset, a point costs one
environment lookup.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

logger = logging.getLogger(__name__)

CRASH_AT = "EMBEDQ_CRASH_AT"
STALL_AT = "EMBEDQ_STALL_AT"
STALL_FILE = "EMBEDQ_STALL_FILE"
STALL_SECONDS = "EMBEDQ_STALL_SECONDS"
SLOW_AT = "EMBEDQ_SLOW_AT"
SLOW_SECONDS = "EMBEDQ_SLOW_SECONDS"

_stalled: set[str] = set()
_slowed: set[str] = set()


def fault_point(name: str) -> None:
    """Die here if ``EMBEDQ_CRASH_AT`` names this point."""
    if os.environ.get(CRASH_AT) == name:
        logger.critical("crash point %r reached: killing process %d", name, os.getpid())
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)


def stall_point(name: str) -> None:
    """Wait here, once per process, if ``EMBEDQ_STALL_AT`` names this point."""
    if os.environ.get(STALL_AT) != name or name in _stalled:
        return
    _stalled.add(name)
    marker = os.environ.get(STALL_FILE)
    if marker:
        Path(marker).write_text(str(os.getpid()))
    logger.critical("stall point %r reached: waiting in process %d", name, os.getpid())
    time.sleep(float(os.environ.get(STALL_SECONDS, "10")))


def slow_point(name: str) -> None:
    """Wait here, every time, if ``EMBEDQ_SLOW_AT`` names this point."""
    if os.environ.get(SLOW_AT) != name:
        return
    seconds = float(os.environ.get(SLOW_SECONDS, "1"))
    if name not in _slowed:  # said once: the point is visited many times
        _slowed.add(name)
        logger.critical("slow point %r reached: each visit waits %.2f s", name, seconds)
    time.sleep(seconds)
