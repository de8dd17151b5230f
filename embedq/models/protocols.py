"""What job code needs of models, so it can take the registry's models or test stand-ins.

``Embedder`` satisfies ``BatchEmbedder``, ``Reranker`` satisfies ``PairScorer``
and ``ModelRegistry`` satisfies ``ModelSource``; a stand-in need only match.
``on_progress(done, total)`` is called after every micro-batch: raising from it
stops the work, and the exception propagates unchanged (cancellation relies on it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from embedq.models.outputs import EmbeddingResult
from embedq.models.runtime import ProgressCallback
from embedq.models.spec import EmbedderSpec


class BatchEmbedder(Protocol):
    """Embeds texts: one result per input, in input order."""

    def embed(
        self, texts: Sequence[object], *, on_progress: ProgressCallback | None = None
    ) -> list[EmbeddingResult]: ...


class PairScorer(Protocol):
    """Scores (query, passage) pairs: a score or None each, and why the Nones failed."""

    def score_each(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> tuple[list[float | None], dict[int, str]]: ...


class ModelSource(Protocol):
    """Hands out ready models by id; loading, sharing and evicting are its business."""

    def embedder(self, model: str, spec: EmbedderSpec) -> BatchEmbedder: ...

    def reranker(self, model: str) -> PairScorer: ...
