import gzip
import json

import pytest

from embedq.api.batching import length_bucketed
from embedq.api.reader import (
    MAX_TEXT_CHARS,
    Document,
    Rejected,
    UnreadableInputError,
    document_from,
    read_documents,
)


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
