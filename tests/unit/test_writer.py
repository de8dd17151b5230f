"""The background writer: one write at a time, in order, and no error swallowed."""

from __future__ import annotations

import threading
import time

import pytest

from embedq.workers.ingest.writer import BatchWriter


class Boom(Exception):
    pass


def test_writes_run_one_at_a_time_in_order_and_submit_waits_for_the_one_before():
    writer = BatchWriter()
    running, events = [], []
    lock = threading.Lock()

    def write(name: str):
        def run():
            with lock:
                running.append(name)
                assert len(running) == 1, running
            time.sleep(0.05)
            events.append(name)
            with lock:
                running.remove(name)

        return run

    writer.submit("a", write("a"))
    submitted_b = time.perf_counter()
    writer.submit("b", write("b"))  # waits for "a"
    assert events == ["a"] and time.perf_counter() - submitted_b > 0.02
    writer.submit("c", write("c"))
    writer.close()
    assert events == ["a", "b", "c"]


def test_submit_returns_while_the_write_runs():
    writer = BatchWriter()
    release = threading.Event()
    writer.submit("a", release.wait)
    assert not release.is_set()  # we are back before the write could end
    release.set()
    writer.drain()


def test_a_failed_write_is_raised_by_the_next_submit_once_that_write_has_run_too():
    writer = BatchWriter()
    done = []

    def fail():
        raise Boom("qdrant is down")

    def slow_b():
        time.sleep(0.1)
        done.append("b")

    writer.submit("a", fail)
    with pytest.raises(Boom, match="qdrant is down"):
        writer.submit("b", slow_b)
    assert done == ["b"]  # not orphaned, and not still running behind the error
    writer.drain()


def test_drain_raises_the_last_writes_error_once():
    writer = BatchWriter()
    writer.submit("a", lambda: (_ for _ in ()).throw(Boom("late")))
    with pytest.raises(Boom, match="late"):
        writer.drain()
    writer.drain()  # reported once
    writer.close()


def test_with_an_error_handler_errors_go_to_it_with_their_batch():
    seen = []
    writer = BatchWriter(on_error=lambda batch_id, error: seen.append((batch_id, str(error))))

    def fail():
        raise Boom("refused")

    writer.submit("a", fail)
    writer.submit("b", lambda: None)
    writer.close()
    assert seen == [("a", "refused")]


def test_follow_ups_run_in_order_behind_their_writes_and_do_not_hold_the_next_write():
    writer = BatchWriter()
    events: list[str] = []
    release = threading.Event()

    def follow_up(name: str):
        def run(written: str) -> None:
            if name == "a":
                release.wait(5)  # a slow completion
            events.append(f"done {written}")

        return run

    writer.submit("a", lambda: "a", then=follow_up("a"))
    writer.submit("b", lambda: "b", then=follow_up("b"))  # a's write ended: b goes on
    writer.submit("c", lambda: "c", then=follow_up("c"))  # b's too, though a is not done
    assert events == []
    release.set()
    writer.drain()
    assert events == ["done a", "done b", "done c"]
    writer.close()
