"""What a producer writes for a worker: one frozen, validated type per job kind.

A job's options are stored as JSON in ``jobs.options`` and read back by the job's
kind (``read_options``); a batch's payloads are stored as JSON in ``batch_payloads``
and read back as ``Document``, ``Query`` or ``DocumentId`` (``read_payloads``). The
JSON keys are the ones earlier versions wrote, so a ledger they filled reads the same.
A value that breaks a contract raises ``InvalidJobOptionsError`` where it is built,
on the producer's side, before anything is queued.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, TypeAlias, cast, get_args

from embedq.errors import PermanentError
from embedq.jobs.status import JobKind

LongText = Literal["chunk", "truncate"]
OUTPUT_NAMES = frozenset({"dense", "sparse", "colbert"})


class InvalidJobOptionsError(PermanentError, ValueError):
    """A job's options break its kind's contract (an unknown output, a share above 1...)."""


@dataclass(frozen=True)
class Embedding:
    """The settings that decide what a model makes of a text, beside the model itself."""

    outputs: frozenset[str] = frozenset({"dense"})
    max_length: int | None = None
    long_text: LongText = "chunk"

    def __post_init__(self) -> None:
        unknown = self.outputs - OUTPUT_NAMES
        if not self.outputs or unknown:
            _refuse(f"outputs must be some of {sorted(OUTPUT_NAMES)}, not {sorted(self.outputs)}")
        if self.max_length is not None and self.max_length < 1:
            _refuse(f"max_length must be at least 1, not {self.max_length}")
        if self.long_text not in get_args(LongText):
            _refuse(f"long_text must be one of {get_args(LongText)}, not {self.long_text!r}")

    @property
    def outputs_text(self) -> str:
        """The outputs as stored and shown: sorted, comma-separated."""
        return ",".join(sorted(self.outputs))

    def to_json(self) -> dict[str, Any]:
        return {
            "outputs": self.outputs_text,
            "max_length": self.max_length,
            "long_text": self.long_text,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Embedding:
        outputs = frozenset(str(raw.get("outputs") or "dense").split(",")) - {""}
        max_length = raw.get("max_length")
        return cls(
            outputs=outputs,
            max_length=None if max_length is None else int(max_length),
            long_text=cast(LongText, raw.get("long_text") or "chunk"),
        )


@dataclass(frozen=True)
class IngestOptions:
    """An ingestion (or a sync) into one version of a collection."""

    physical_collection: str
    embedding: Embedding = Embedding()
    # documents per batch the producer cut (None: its default); shown, never needed by workers
    batch_size: int | None = None
    skip_unchanged: bool = False
    sync: bool = False
    max_delete_share: float = 1.0

    def __post_init__(self) -> None:
        _check_batch_size(self.batch_size)
        if not 0.0 <= self.max_delete_share <= 1.0:
            _refuse(f"max_delete_share must be between 0 and 1, not {self.max_delete_share}")
        if self.sync and not self.skip_unchanged:
            _refuse("a sync skips unchanged documents: it must set skip_unchanged")

    def to_json(self) -> dict[str, Any]:
        return {
            **self.embedding.to_json(),
            "physical_collection": self.physical_collection,
            "batch_size": self.batch_size,
            "skip_unchanged": self.skip_unchanged,
            "sync": self.sync,
            "max_delete_share": self.max_delete_share,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], *, collection: str) -> IngestOptions:
        return cls(
            physical_collection=str(raw.get("physical_collection") or collection),
            embedding=Embedding.from_json(raw),
            batch_size=_optional_int(raw.get("batch_size")),
            skip_unchanged=bool(raw.get("skip_unchanged")),
            sync=bool(raw.get("sync")),
            max_delete_share=float(raw.get("max_delete_share", 1.0)),
        )


@dataclass(frozen=True)
class ReindexOptions:
    """A re-index: every document of ``source_collection`` embedded again into a new version."""

    physical_collection: str
    source_collection: str
    embedding: Embedding = Embedding()
    batch_size: int | None = None
    drop_old: bool = False
    # set by each catch-up round: ingestions that ended before it are in the new version
    caught_up_since: str | None = None

    def __post_init__(self) -> None:
        _check_batch_size(self.batch_size)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.embedding.to_json(),
            "physical_collection": self.physical_collection,
            "source_collection": self.source_collection,
            "batch_size": self.batch_size,
            "drop_old": self.drop_old,
            "caught_up_since": self.caught_up_since,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], *, collection: str) -> ReindexOptions:
        return cls(
            physical_collection=str(raw.get("physical_collection") or collection),
            source_collection=str(raw.get("source_collection") or collection),
            embedding=Embedding.from_json(raw),
            batch_size=_optional_int(raw.get("batch_size")),
            drop_old=bool(raw.get("drop_old")),
            caught_up_since=raw.get("caught_up_since"),
        )


@dataclass(frozen=True)
class RerankOptions:
    """A rerank: each query's candidates scored; found by a search of a collection, or given."""

    top_k: int | None = None
    from_collection: str | None = None
    # candidates a worker searches for per query (None: the queries bring their own)
    candidates: int | None = None

    def __post_init__(self) -> None:
        if self.top_k is not None and self.top_k < 1:
            _refuse(f"top_k must be at least 1, not {self.top_k}")
        if (self.from_collection is None) != (self.candidates is None):
            _refuse("from_collection and candidates go together: a search needs both")
        if self.candidates is not None and self.candidates < 1:
            _refuse(f"candidates must be at least 1, not {self.candidates}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], *, collection: str = "") -> RerankOptions:
        return cls(
            top_k=_optional_int(raw.get("top_k")),
            from_collection=raw.get("from_collection"),
            candidates=_optional_int(raw.get("candidates")),
        )


@dataclass(frozen=True)
class DeleteOptions:
    """Removing documents by id from one version of a collection."""

    physical_collection: str
    batch_size: int | None = None

    def __post_init__(self) -> None:
        _check_batch_size(self.batch_size)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], *, collection: str) -> DeleteOptions:
        return cls(
            str(raw.get("physical_collection") or collection),
            _optional_int(raw.get("batch_size")),
        )


JobOptions: TypeAlias = IngestOptions | ReindexOptions | RerankOptions | DeleteOptions
OPTIONS_BY_KIND: dict[JobKind, type[JobOptions]] = {
    JobKind.ingest: IngestOptions,
    JobKind.reindex: ReindexOptions,
    JobKind.rerank: RerankOptions,
    JobKind.delete: DeleteOptions,
}


def read_options(kind: str | JobKind, raw: Mapping[str, Any], *, collection: str) -> JobOptions:
    """A job's stored options as its kind's type; what they leave out takes its default
    (a version of a collection: the ``collection`` the job names)."""
    try:
        return OPTIONS_BY_KIND[JobKind(kind)].from_json(raw, collection=collection)
    except InvalidJobOptionsError:
        raise  # read, and refused by its type's own checks: its reason says why
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidJobOptionsError(f"options of a {kind} job cannot be read: {error}") from error


def written_collection(options: JobOptions) -> str:
    """The version of a collection a job writes to (or deletes from), never the alias."""
    if isinstance(options, RerankOptions):
        _refuse("a rerank job writes to no collection")
    return options.physical_collection


def embedding_of(options: JobOptions) -> Embedding:
    """How a job that embeds (an ingestion or a re-index) embeds its texts."""
    if not isinstance(options, (IngestOptions, ReindexOptions)):
        _refuse(f"a job with {type(options).__name__} embeds nothing")
    return options.embedding


def options_of_kind(kind: JobKind, options: JobOptions) -> JobOptions:
    """``options``, checked to be the type a ``kind`` job takes."""
    wanted = OPTIONS_BY_KIND[kind]
    if not isinstance(options, wanted):
        _refuse(f"a {kind} job takes {wanted.__name__}, not {type(options).__name__}")
    return options


@dataclass(frozen=True)
class Document:
    """A document to embed: its id, its text (title in front) and optional metadata."""

    id: str
    text: str
    metadata: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"id": self.id, "text": self.text}
        if self.metadata is not None:
            payload["metadata"] = self.metadata
        return payload

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Document:
        return cls(str(raw["id"]), str(raw["text"]), raw.get("metadata"))


@dataclass(frozen=True)
class Candidate:
    """One text to score against a query."""

    id: str
    text: str


@dataclass(frozen=True)
class Query:
    """A rerank query, with its candidates (none yet where a worker searches for them)."""

    id: str
    text: str
    candidates: tuple[Candidate, ...] = ()

    def to_json(self) -> dict[str, Any]:
        candidates = [{"id": c.id, "text": c.text} for c in self.candidates]
        return {"id": self.id, "query": self.text, "candidates": candidates}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Query:
        found = raw.get("candidates") or ()
        candidates = tuple(Candidate(str(c["id"]), str(c["text"])) for c in found)
        return cls(str(raw["id"]), str(raw["query"]), candidates)


@dataclass(frozen=True)
class DocumentId:
    """A document to delete, by id."""

    id: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DocumentId:
        return cls(str(raw["id"]))


Payload: TypeAlias = Document | Query | DocumentId
PAYLOAD_BY_KIND: dict[JobKind, type[Payload]] = {
    JobKind.ingest: Document,
    JobKind.reindex: Document,
    JobKind.rerank: Query,
    JobKind.delete: DocumentId,
}


def read_payloads(kind: str | JobKind, raw: Sequence[Mapping[str, Any]]) -> list[Payload]:
    """A batch's stored payloads as its job kind's type."""
    payload = PAYLOAD_BY_KIND[JobKind(kind)]
    return [payload.from_json(item) for item in raw]


def _check_batch_size(size: int | None) -> None:
    if size is not None and size < 1:
        _refuse(f"batch_size must be at least 1, not {size}")


def _optional_int(value: object) -> int | None:
    return None if value is None else int(cast(int, value))


def _refuse(reason: str) -> NoReturn:
    raise InvalidJobOptionsError(reason)


def default_options(kind: str | JobKind, *, collection: str) -> JobOptions:
    """The options of a ``kind`` job that sets none: every default, into ``collection``."""
    return read_options(kind, {}, collection=collection)
