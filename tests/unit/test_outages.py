"""Riding out a service briefly out of reach, and the Postgres settings that bound an outage."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import make_url

from embedq import outages
from embedq.jobs import LedgerUnavailableError
from embedq.jobs.db import postgres_arguments
from embedq.outages import ServiceOutageError, ride_out


@pytest.fixture(autouse=True)
def no_sleeping(monkeypatch) -> list[float]:
    pauses: list[float] = []
    monkeypatch.setattr(outages.time, "sleep", pauses.append)
    return pauses


class FlakyService:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise LedgerUnavailableError("connection refused")
        return "done"


def test_a_service_back_after_a_few_tries_is_waited_for_and_announced(no_sleeping, caplog):
    flaky = FlakyService(failures=3)
    with caplog.at_level(logging.WARNING):
        assert ride_out(flaky, service="the ledger", limit_s=60) == "done"

    assert flaky.calls == 4
    assert no_sleeping == [0.5, 1.0, 2.0]  # backoff, not a tight loop
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0].startswith("the ledger is out of reach (connection refused)")
    assert messages[-1].startswith("the ledger is back after")
    assert len(messages) == 2  # once when it went, once when it came back


def test_a_service_out_for_longer_than_the_limit_fails_with_a_reason(monkeypatch):
    clock = iter(range(0, 10_000, 7))
    monkeypatch.setattr(outages.time, "monotonic", lambda: float(next(clock)))
    flaky = FlakyService(failures=1_000)

    with pytest.raises(ServiceOutageError, match=r"the broker was out of reach for \d+ s"):
        ride_out(flaky, service="the broker", limit_s=30)
    assert 2 <= flaky.calls < 10


def test_an_error_that_is_not_an_outage_is_raised_at_once():
    def broken() -> None:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        ride_out(broken, service="the ledger")


def test_postgres_sessions_bound_what_a_vanished_client_can_hold():
    url = make_url("postgresql+psycopg://u@db/ledger?options=-csearch_path%3Dtenant")
    arguments = postgres_arguments(url, {})

    options = arguments["options"]
    assert "-c idle_in_transaction_session_timeout=30s" in options
    assert "-c lock_timeout=10s" in options
    # the URL's own options come last, so they win over a limit of the same name
    assert options.endswith("-csearch_path=tenant")
    assert (arguments["keepalives"], arguments["connect_timeout"]) == (1, 10)


def test_settings_the_url_names_are_left_to_the_url():
    url = make_url("postgresql+psycopg://u@db/ledger?connect_timeout=3")
    arguments = postgres_arguments(url, {"keepalives_idle": 60})

    assert "connect_timeout" not in arguments  # the driver takes the URL's 3
    assert arguments["keepalives_idle"] == 60


def test_a_gate_holds_work_back_until_the_service_answers(no_sleeping, caplog):
    probe = FlakyService(failures=2)
    gate = outages.ServiceGate("Qdrant", probe)
    gate.wait()
    assert probe.calls == 0  # open: no probing while nothing failed

    with caplog.at_level(logging.WARNING):
        gate.failed(LedgerUnavailableError("connection refused"))
        gate.wait()
        gate.wait()

    assert probe.calls == 3  # two failed probes, with backoff, then it answered
    assert no_sleeping == [0.5, 1.0]
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0].startswith("Qdrant is out of reach")
    assert messages[-1].startswith("Qdrant is back after")


def test_a_gate_gives_up_waiting_after_its_limit(monkeypatch):
    clock = iter(range(0, 10_000, 5))
    monkeypatch.setattr(outages.time, "monotonic", lambda: float(next(clock)))
    probe = FlakyService(failures=1_000)
    gate = outages.ServiceGate("Qdrant", probe)
    gate.failed(LedgerUnavailableError("connection refused"))

    gate.wait(limit_s=20)  # returns: the claim goes ahead and finds out for itself

    assert 2 <= probe.calls <= 5
