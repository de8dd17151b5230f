"""A model source holding models its caller built: whatever a batch asks for, they answer.

For callers that load or build their models themselves (a benchmark timing one loaded
model, a test's stand-in) and run batches through code that asks a ``ModelSource``.
"""

from __future__ import annotations

from dataclasses import dataclass

from embedq.errors import ModelLoadError
from embedq.models.protocols import BatchEmbedder, PairScorer
from embedq.models.spec import EmbedderSpec


@dataclass(frozen=True)
class GivenModels:
    """Serves ``embedder`` for every embedding model and spec, ``reranker`` for every reranker."""

    embedder_model: BatchEmbedder | None = None
    reranker_model: PairScorer | None = None

    def embedder(self, model: str, spec: EmbedderSpec) -> BatchEmbedder:
        if self.embedder_model is None:
            raise ModelLoadError(f"no embedder was given to serve {model!r}")
        return self.embedder_model

    def reranker(self, model: str) -> PairScorer:
        if self.reranker_model is None:
            raise ModelLoadError(f"no reranker was given to serve {model!r}")
        return self.reranker_model
