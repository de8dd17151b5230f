"""What the rerank routes take and give, with the limits a request must respect."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from embedq.api.http.schemas import MAX_DOCUMENTS_PER_BATCH, MAX_ID_CHARS, MAX_MODEL_CHARS, NO_NUL
from embedq.api.reader import MAX_TEXT_CHARS

MAX_CANDIDATES_PER_QUERY = 10_000
MAX_TOP_K = MAX_CANDIDATES_PER_QUERY

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS, pattern=NO_NUL)] | int


class CandidateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Id
    text: Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]


class QueryIn(BaseModel):
    """A query and the candidates to score against it."""

    model_config = ConfigDict(extra="forbid")

    query_id: Id
    query: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS)]
    candidates: Annotated[
        list[CandidateIn], Field(min_length=1, max_length=MAX_CANDIDATES_PER_QUERY)
    ]


class RerankIn(BaseModel):
    """A rerank job, created, filled and sealed in one request."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[
        str, StringConstraints(min_length=1, max_length=MAX_MODEL_CHARS, pattern=NO_NUL)
    ]
    top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K)] | None = None
    queries: Annotated[list[QueryIn], Field(min_length=1, max_length=MAX_DOCUMENTS_PER_BATCH)]


class ResultOut(BaseModel):
    query_id: str
    candidate_id: str
    score: float
    rank: int


class ResultPage(BaseModel):
    results: list[ResultOut]
    limit: int
    offset: int
    next_offset: int | None
