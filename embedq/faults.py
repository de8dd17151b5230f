"""Crash points: named places where a process can be made to die, to prove what a crash leaves.

Set ``EMBEDQ_CRASH_AT`` to a point's name and the process kills itself (SIGKILL, no
clean-up of any kind) when it gets there, as a power cut or the OOM killer would. The
fault tests use it to stop a worker between two steps that must survive being
separated, such as a batch's upsert and its clean-up. Unset, a point costs one
environment lookup.
"""

from __future__ import annotations

import logging
import os
import signal

logger = logging.getLogger(__name__)

CRASH_AT = "EMBEDQ_CRASH_AT"


def fault_point(name: str) -> None:
    """Die here if ``EMBEDQ_CRASH_AT`` names this point."""
    if os.environ.get(CRASH_AT) == name:
        logger.critical("crash point %r reached: killing process %d", name, os.getpid())
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)
