"""Properties of intake: no bytes make the reader raise, and what it accepts can be stored."""

from __future__ import annotations

import gzip
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedq.api.ingest.reader import Rejected, parse_line, read_documents
from embedq.jobs.contracts import Document
from embedq.store.points import PointData, checked_size, request_body

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces that steer random bytes towards the reader's edges: JSON that almost parses,
# escapes UTF-8 cannot encode, numbers no store takes, nesting past every limit.
FRAGMENTS = [
    b'{"id": "x", "text": "t"',
    b'"metadata": {',
    b'"title": ',
    b'"_id": 7, ',
    b'"\\ud800"',
    b"NaN",
    b"-Infinity",
    b"1e400",
    b"1180591620717411303424",
    b"9" * 5000,
    b"[" * 40,
    b'{"a":' * 2000,
    b"}",
    b"\xff\xfe",
    b"\x1f\x8b",
    b"\x00",
    b"\n",
    b",",
]

piece = st.one_of(st.binary(max_size=40), st.sampled_from(FRAGMENTS))
noise = st.lists(piece, max_size=30).map(b"".join)

# Text with what JSON escapes can hold and UTF-8 cannot: lone surrogates, NULs.
odd_text = st.lists(
    st.one_of(st.characters(), st.sampled_from(["\ud800", "\udfff", "\x00", "."])), max_size=8
).map("".join)

# Mostly values every store takes, so that many documents reach the payload encoders;
# a value no store takes is one branch in five.
fine_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
odd_scalars = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
    st.floats(),
    odd_text,
)
keys = st.one_of(st.text(max_size=6), st.text(max_size=6), st.text(max_size=6), odd_text)

values = st.recursive(
    st.one_of(fine_scalars, fine_scalars, fine_scalars, fine_scalars, odd_scalars),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=12,
)


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


# a JSON text for ``metadata``: mostly objects, sometimes any value, a few deeper than allowed
metadata_json = st.one_of(
    st.dictionaries(keys, values, max_size=6).map(json.dumps),
    values.map(json.dumps),
    st.sampled_from([31, 32, 33, 500, 3000]).map(nested),
)


@st.composite
def file_bytes(draw: st.DrawFn) -> bytes:
    """Noise as it is, gzipped, or gzipped and cut at some point."""
    data = draw(noise)
    form = draw(st.sampled_from(["plain", "gzip", "cut"]))
    if form == "plain":
        return data
    packed = gzip.compress(data)
    return packed if form == "gzip" else packed[: draw(st.integers(0, len(packed)))]


@FAST
@given(data=file_bytes())
def test_any_bytes_become_documents_or_rejections_never_an_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("input") / "any.jsonl"
    path.write_bytes(data)
    for outcome in read_documents(path):
        assert isinstance(outcome, Document | Rejected)
        if isinstance(outcome, Rejected):
            # a reason goes to the ledger: it must be storable text itself
            assert "\x00" not in outcome.reason
            outcome.reason.encode("utf-8")


@FAST
@given(metadata=metadata_json)
def test_accepted_metadata_always_encodes_for_qdrant_and_the_ledger(metadata):
    line = f'{{"id": "doc", "text": "some text", "metadata": {metadata}}}'.encode()
    outcome = parse_line(line, 1)
    if isinstance(outcome, Rejected):
        return
    point = PointData(
        doc_id=outcome.id,
        chunk=0,
        text=outcome.text,
        metadata=outcome.metadata,
        job_id="j",
        model="m",
        dense=np.ones(4, dtype=np.float32),
        sparse=None,
        colbert=None,
    )
    checked_size(point)
    request_body([point])
    json.dumps(outcome.to_json())  # the ledger's column
    json.dumps(outcome.to_json(), allow_nan=False, ensure_ascii=False).encode("utf-8")
