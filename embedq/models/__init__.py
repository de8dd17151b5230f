"""The model runtime: length-bucketed, memory-budgeted embedding and reranking.

Only torch, transformers and FlagEmbedding are imported here; no broker,
database or vector store.
"""

from embedq.models.embedder import Embedder, EmbedderSettings
from embedq.models.given import GivenModels
from embedq.models.memory import CostModel, format_bytes, parse_bytes
from embedq.models.outputs import OUTPUTS, Chunk, EmbeddingResult
from embedq.models.protocols import BatchEmbedder, ModelSource, PairScorer
from embedq.models.registry import ModelRegistry, ResidentModel
from embedq.models.reranker import Reranker, RerankError
from embedq.models.runtime import RuntimeStats
from embedq.models.spec import EmbedderSpec

__all__ = [
    "OUTPUTS",
    "BatchEmbedder",
    "Chunk",
    "CostModel",
    "Embedder",
    "EmbedderSettings",
    "EmbedderSpec",
    "EmbeddingResult",
    "GivenModels",
    "ModelRegistry",
    "ModelSource",
    "PairScorer",
    "RerankError",
    "Reranker",
    "ResidentModel",
    "RuntimeStats",
    "format_bytes",
    "parse_bytes",
]
