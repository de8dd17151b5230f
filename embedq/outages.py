"""Riding out a service that is briefly out of reach: wait, retry, say when it is back.

A producer that cannot reach Redis or Postgres for a moment (a restart, a fail-over)
waits and retries with backoff, up to ``SERVICE_WAIT_S``, and then gives up with an
error that says which service and for how long; the caller records that on its job.
Workers and their reapers log once when a service goes away and once when it is back,
not once per failed try.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from embedq.errors import RetryableError

logger = logging.getLogger(__name__)

T = TypeVar("T")

SERVICE_WAIT_S = 120.0
"""How long a producer waits for the ledger or the broker before it fails its job."""

FIRST_PAUSE_S = 0.5
MAX_PAUSE_S = 10.0

# how the logs and errors name the services
LEDGER = "the ledger database"
BROKER = "the broker (Redis)"


class ServiceOutageError(RetryableError):
    """A service stayed out of reach longer than a producer waits for it."""


class Outage:
    """Logs when ``service`` goes out of reach and when it is back, once each."""

    def __init__(self, service: str, log: logging.Logger = logger) -> None:
        self.service = service
        self._log = log
        self._since: float | None = None

    @property
    def seconds(self) -> float:
        """How long the service has been out of reach (0 while it is not)."""
        return 0.0 if self._since is None else time.monotonic() - self._since

    def failed(self, error: BaseException) -> None:
        if self._since is None:
            self._since = time.monotonic()
            self._log.warning("%s is out of reach (%s): retrying", self.service, error)

    def succeeded(self) -> None:
        if self._since is not None:
            self._log.warning("%s is back after %.0f s", self.service, self.seconds)
            self._since = None


def transient_errors() -> tuple[type[BaseException], ...]:
    """What a lost ledger, broker or Qdrant raises: worth retrying."""
    import kombu.exceptions
    import redis.exceptions

    return (
        RetryableError,
        kombu.exceptions.OperationalError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        ConnectionError,
        TimeoutError,
    )


def backoff() -> Iterator[float]:
    """Pauses between tries: doubling from ``FIRST_PAUSE_S`` up to ``MAX_PAUSE_S``, forever."""
    pause = FIRST_PAUSE_S
    while True:
        yield pause
        pause = min(pause * 2, MAX_PAUSE_S)


def ride_out(action: Callable[[], T], *, service: str, limit_s: float | None = None) -> T:
    """``action()``, retried with backoff while ``service`` is out of reach, up to ``limit_s``.

    Only an action that is safe to repeat belongs here: its first try may have taken
    effect just before the connection broke.
    """
    limit = SERVICE_WAIT_S if limit_s is None else limit_s
    outage = Outage(service)
    for pause in backoff():
        try:
            result = action()
        except transient_errors() as error:
            outage.failed(error)
            if outage.seconds + pause > limit:
                raise ServiceOutageError(
                    f"{service} was out of reach for {outage.seconds:.0f} s: {error}"
                ) from error
            time.sleep(pause)
            continue
        outage.succeeded()
        return result
    raise AssertionError("backoff() never ends")


class ServiceGate:
    """Holds new work back while a service its last piece of work found away is still away.

    A worker whose batch could not be written (Qdrant restarting) would otherwise go on
    to claim and embed batch after batch, each failing the same way. ``failed`` closes
    the gate; ``wait`` returns at once while it is open, and otherwise probes the service
    with backoff until it answers (opening the gate) or ``limit_s`` has passed.
    """

    def __init__(
        self, service: str, probe: Callable[[], object], log: logging.Logger = logger
    ) -> None:
        self._outage = Outage(service, log)
        self._probe = probe
        self._closed = threading.Event()  # set by a writer thread, read by the task's

    def failed(self, error: BaseException) -> None:
        self._outage.failed(error)
        self._closed.set()

    def succeeded(self) -> None:
        self._closed.clear()
        self._outage.succeeded()

    def wait(self, limit_s: float = SERVICE_WAIT_S) -> None:
        deadline = time.monotonic() + limit_s
        pauses = backoff()
        while self._closed.is_set() and time.monotonic() < deadline:
            try:
                self._probe()
            except transient_errors():
                time.sleep(next(pauses))
                continue
            self.succeeded()
