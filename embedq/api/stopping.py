"""What stops a producer part-way, and how the job records it.

SIGTERM (``docker stop``, a scheduler's kill) becomes an exception raised wherever the
process is, as Ctrl-C already does, so every cleanup on the way out runs: a producer
then ends its job with a reason saying what stopped it instead of leaving it open.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

MESSAGE_CHARS = 1000  # of an error's message kept in the reason


class Stopped(BaseException):
    """A signal asked the process to stop.

    A BaseException, like KeyboardInterrupt, so no ``except Exception`` takes it for an
    error to handle and carry on.
    """

    def __init__(self, signum: int) -> None:
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.signal_name}")
        self.exit_code = 128 + signum  # what a shell reports for a process the signal ended


@contextlib.contextmanager
def stopped_by_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Stopped``; outside it, the old handler is back.

    Only the main thread receives signals, so elsewhere the block changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise Stopped(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_reason(error: BaseException, received: int) -> str:
    """Why a job's intake stopped, as the job records it: what stopped it, and when."""
    after = f"after {received:,} document{'' if received == 1 else 's'}"
    if isinstance(error, Exception):
        # short, and without NUL, to fit the API's intake_error and any database's text
        message = str(error).replace("\x00", "")[:MESSAGE_CHARS]
        return f"intake stopped {after}: {type(error).__name__}: {message}"
    return f"intake stopped by {_stopper(error)} {after}"


def _stopper(error: BaseException) -> str:
    if isinstance(error, Stopped):
        return error.signal_name
    if isinstance(error, KeyboardInterrupt):
        return "Ctrl-C"
    return type(error).__name__  # SystemExit, or another way out of the process
