import gzip
import json
import os
import random
import threading
import time

import pytest

from embedq.api.deletion import read_all_ids
from embedq.api.ingest import reader
from embedq.api.ingest.batching import length_bucketed
from embedq.api.ingest.reader import (
    MAX_TEXT_CHARS,
    Rejected,
    UnreadableInputError,
    document_from,
    read_documents,
)
from embedq.api.rerank.query_reader import read_queries
from embedq.jobs.contracts import Document


def write_lines(path, lines: list[bytes], *, gz: bool = False):
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def row(**fields) -> bytes:
    return json.dumps(fields).encode()


@pytest.mark.parametrize("gz", [False, True])
def test_reads_documents_and_reports_every_bad_line(tmp_path, gz):
    lines = [
        row(id="a", text="alpha", title="A title", metadata={"year": 2020}),
        row(_id=7, text="beir style"),
        b"{not json",
        row(text="no id"),
        row(id="b", text=5),
        row(id="c", text="   "),
        row(id="a", text="again"),
        b'{"id": "d", "text": "bad \xff utf-8"}',
        row(id="e", text="x" * (MAX_TEXT_CHARS + 1)),
        b"[1, 2]",
        row(id="f", text="ok", metadata=["not", "an", "object"]),
        b"",
        row(id="g", text="last"),
    ]
    outcomes = list(read_documents(write_lines(tmp_path / "in.jsonl", lines, gz=gz)))
    documents = [o for o in outcomes if isinstance(o, Document)]
    rejected = {o.line: o for o in outcomes if isinstance(o, Rejected)}
    assert [d.id for d in documents] == ["a", "7", "g"]
    assert documents[0] == Document("a", "A title alpha", {"year": 2020})
    assert "not JSON" in rejected[3].reason
    assert "no usable id" in rejected[4].reason
    assert "text must be a string, not int" in rejected[5].reason and rejected[5].doc_id == "b"
    assert "empty" in rejected[6].reason
    assert "duplicate id 'a'" in rejected[7].reason
    assert "not valid UTF-8" in rejected[8].reason
    assert "more than the" in rejected[9].reason
    assert "not a JSON object" in rejected[10].reason
    assert "metadata must be an object" in rejected[11].reason
    assert all(f"line {n}" in r.reason for n, r in rejected.items() if n != 7)


def test_a_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(UnreadableInputError, match="cannot read"):
        list(read_documents(tmp_path / "missing.jsonl"))


def test_length_bucketing_keeps_every_document_and_groups_similar_lengths():
    documents = [Document(str(i), "w " * ((i * 37) % 500 + 1)) for i in range(1000)]
    batches = list(length_bucketed(documents, batch_size=50, window_batches=4))
    assert sorted(d.id for b in batches for d in b) == sorted(d.id for d in documents)
    assert all(len(b) <= 50 for b in batches)
    for batch in batches:
        lengths = [len(d.text) for d in batch]
        assert max(lengths) - min(lengths) < 300  # one fifth of a window's spread, not all of it


def test_ids_are_unique_across_files_when_they_share_a_seen_set(tmp_path):
    first = write_lines(tmp_path / "a.jsonl", [row(id="x", text="one")])
    second = write_lines(tmp_path / "b.jsonl", [row(id="y", text="two"), row(id="x", text="3")])
    seen: set[str] = set()
    outcomes = [*read_documents(first, seen=seen), *read_documents(second, seen=seen)]
    assert [o.id for o in outcomes if isinstance(o, Document)] == ["x", "y"]
    [duplicate] = [o for o in outcomes if isinstance(o, Rejected)]
    assert (duplicate.line, duplicate.doc_id) == (2, "x")
    assert duplicate.reason == "line 2 of b.jsonl: duplicate id 'x'"


def test_an_id_with_a_nul_character_is_rejected_without_keeping_it():
    outcome = document_from({"id": "a\x00b", "text": "fine"}, 3, where="line 3")
    assert outcome == Rejected(3, "line 3: the id holds a NUL character")
    text_with_nul = document_from({"id": "ok", "text": "a\x00b"}, 4, where="line 4")
    assert text_with_nul == Document("ok", "a\x00b")  # payloads are JSON: a NUL is fine there


# --- no document can sink its job -------------------------------------------------------------


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def metadata_line(doc_id: str, metadata_json: str) -> bytes:
    return f'{{"id": "{doc_id}", "text": "t", "metadata": {metadata_json}}}'.encode()


def test_a_line_past_a_limit_fails_alone_and_the_documents_around_it_come_out(tmp_path):
    lines = [
        row(id="first", text="fine", metadata={"n": 2**63 - 1, "m": -(2**63), "x": 0.5}),
        metadata_line("deep", nested(3000)),
        metadata_line("deep40", nested(40)),
        row(id="huge", text="t", metadata={"a": {"b": 2**70}}),
        row(id="low", text="t", metadata={"tags": [1, -(2**64)]}),
        metadata_line("nan", '{"x": NaN}'),
        metadata_line("inf", '{"x": [-Infinity]}'),
        metadata_line("overflow", '{"x": 1e400}'),
        row(id="\ud800", text="t"),
        row(id="text", text="a \udc00 b"),
        row(id="title", text="t", title="\ud83d"),
        row(id="key", text="t", metadata={"\ud800": 1}),
        row(id="value", text="t", metadata={"k": ["ok", "\udfff"]}),
        row(id="keys", text="t", metadata={"a": {str(i): i for i in range(1025)}}),
        row(id="big", text="t", metadata={"blob": "x" * 70_000}),
        metadata_line("digits", '{"x": ' + "9" * 5000 + "}"),
        row(id="last", text="still read", metadata={"emoji": "\U0001f600"}),
    ]
    outcomes = list(read_documents(write_lines(tmp_path / "in.jsonl", lines)))
    assert [o.id for o in outcomes if isinstance(o, Document)] == ["first", "last"]
    reasons = {o.line: o.reason for o in outcomes if isinstance(o, Rejected)}
    assert reasons == {
        2: "line 2 is nested 3,001 levels deep, too deep to read (metadata may nest 32)",
        3: "line 3: metadata is nested 40 levels deep, more than the 32 allowed",
        4: "line 4: metadata.a.b: integer 1180591620717411303424 is outside the signed 64-bit "
        "range",
        5: "line 5: metadata.tags[1]: integer -18446744073709551616 is outside the signed 64-bit "
        "range",
        6: "line 6: metadata.x: nan is not a finite number",
        7: "line 7: metadata.x[0]: -inf is not a finite number",
        8: "line 8: metadata.x: inf is not a finite number",
        9: "line 9: the id holds a lone surrogate at character 0, not Unicode",
        10: "line 10: text holds a lone surrogate at character 2, not Unicode",
        11: "line 11: title holds a lone surrogate at character 0, not Unicode",
        12: "line 12: metadata: key '\\ud800' holds a lone surrogate at character 0, not Unicode",
        13: "line 13: metadata.k[1]: the string holds a lone surrogate at character 0, not Unicode",
        14: "line 14: metadata has 1,026 keys in all, more than the 1,024 allowed",
        15: "line 15: metadata is 70,011 bytes as JSON, more than the 65,536 allowed",
        16: "line 16 is not JSON that can be read: Exceeds the limit (4300 digits) for integer "
        "string conversion",
    }
    rejected = [o for o in outcomes if isinstance(o, Rejected)]
    assert all(o.doc_id is None for o in rejected if o.line in (2, 9, 16))
    assert {o.doc_id for o in rejected if o.line == 4} == {"huge"}
    for reason in reasons.values():
        reason.encode("utf-8")  # every reason can be stored


def test_an_overlong_line_is_rejected_unparsed_and_the_next_line_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "MAX_LINE_BYTES", 1000)
    monkeypatch.setattr(reader, "_SKIP_BYTES", 64)  # the rest is skipped in many reads
    lines = [row(id="a", text="x" * 5000), row(id="b", text="y" * 900)]
    outcomes = list(read_documents(write_lines(tmp_path / "long.jsonl", lines)))
    assert outcomes == [
        Rejected(1, "line 1 is longer than the 1,000 bytes read"),
        Document("b", "y" * 900),
    ]


def test_a_cut_gzip_file_yields_its_readable_documents_then_one_rejection(tmp_path):
    words = random.Random(7)
    lines = [row(id=f"d{i}", text=f"{words.getrandbits(256):x}") for i in range(3000)]
    whole = write_lines(tmp_path / "whole.jsonl.gz", lines, gz=True).read_bytes()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    outcomes = list(read_documents(cut))
    *documents, last = outcomes
    assert 0 < len(documents) < 3000
    assert [d.id for d in documents] == [f"d{i}" for i in range(len(documents))]
    assert last == Rejected(
        len(documents) + 1,
        f"cut.jsonl.gz: unreadable after line {len(documents)}: "
        "Compressed file ended before the end-of-stream marker was reached",
    )
    after = write_lines(tmp_path / "after.jsonl", [row(id="next", text="file")])
    assert [o.id for o in read_documents(after) if isinstance(o, Document)] == ["next"]
    queries = list(read_queries(cut))  # the rerank reader and the delete ids reader too
    assert queries[-1].reason == last.reason
    ids = list(read_all_ids([cut]))
    assert isinstance(ids[-1], Rejected) and ids[-1].reason == last.reason


def test_a_corrupt_gzip_stream_is_one_rejection_too(tmp_path):
    data = bytearray(gzip.compress(b"\n".join(row(id=str(i), text="t") for i in range(50))))
    data[len(data) // 2] ^= 0xFF
    broken = tmp_path / "broken.gz"
    broken.write_bytes(bytes(data))
    *_, last = read_documents(broken)
    assert isinstance(last, Rejected) and "broken.gz: unreadable after line" in last.reason


@pytest.mark.parametrize("gz", [False, True])
def test_a_named_pipe_is_read_like_a_file(tmp_path, gz):
    pipe = tmp_path / "pipe.jsonl"
    os.mkfifo(pipe)
    data = b"\n".join(row(id=f"p{i}", text="piped") for i in range(100)) + b"\n"
    data = gzip.compress(data) if gz else data

    def feed() -> None:
        with open(pipe, "wb", buffering=0) as writer:
            writer.write(data[:1])  # the reader's first peek may see one byte only
            time.sleep(0.05)
            writer.write(data[1:])

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    outcomes = list(read_documents(pipe))
    writer.join(timeout=5)
    assert [o.id for o in outcomes if isinstance(o, Document)] == [f"p{i}" for i in range(100)]
    assert len(outcomes) == 100
