"""What the rerank routes take and give, with the limits a request must respect."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from embedq.api.http.schemas import (
    MAX_DOCUMENTS_PER_BATCH,
    MAX_ID_CHARS,
    MAX_MODEL_CHARS,
    NO_NUL,
    CollectionName,
    RejectedIn,
)
from embedq.api.ingest.reader import MAX_TEXT_CHARS
from embedq.api.rerank.query_reader import MAX_CANDIDATES_PER_QUERY

MAX_TOP_K = MAX_CANDIDATES_PER_QUERY

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS, pattern=NO_NUL)] | int


class CandidateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Id
    text: Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]


class QueryIn(BaseModel):
    """A query and the candidates to score against it (none for a job ``from_collection``)."""

    model_config = ConfigDict(extra="forbid")

    query_id: Id
    query: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS)]
    candidates: (
        Annotated[list[CandidateIn], Field(min_length=1, max_length=MAX_CANDIDATES_PER_QUERY)]
        | None
    ) = None


Queries = Annotated[list[QueryIn], Field(max_length=MAX_DOCUMENTS_PER_BATCH)]


class RerankIn(BaseModel):
    """A rerank job, with its queries; sealed at once unless ``seal`` is false.

    With ``from_collection``, queries bring no candidates: a worker takes each one's
    ``candidates`` best documents from a hybrid search of that collection.
    """

    model_config = ConfigDict(extra="forbid")

    model: Annotated[
        str, StringConstraints(min_length=1, max_length=MAX_MODEL_CHARS, pattern=NO_NUL)
    ]
    top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K)] | None = None
    from_collection: CollectionName | None = None
    candidates: Annotated[int, Field(ge=1, le=MAX_CANDIDATES_PER_QUERY)] = 100
    queries: Queries = Field(default_factory=list)
    seal: bool = True


class QueriesIn(BaseModel):
    """Queries to add to an open rerank job, and lines the producer could not read."""

    model_config = ConfigDict(extra="forbid")

    queries: Queries = Field(default_factory=list)
    rejected: Annotated[list[RejectedIn], Field(max_length=MAX_DOCUMENTS_PER_BATCH)] = Field(
        default_factory=list
    )

    @model_validator(mode="after")
    def _not_empty(self) -> QueriesIn:
        if not self.queries and not self.rejected:
            raise ValueError("a request needs queries (or rejected lines to record)")
        return self


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
