"""The model runtime: length-bucketed, memory-budgeted embedding and reranking.

Only torch, transformers and FlagEmbedding are imported here; no broker,
database or vector store.
"""

from embedq.models.embedder import Embedder, EmbedderSettings
from embedq.models.memory import CostModel, format_bytes, parse_bytes
from embedq.models.outputs import OUTPUTS, Chunk, EmbeddingResult
from embedq.models.reranker import Reranker, RerankError
from embedq.models.runtime import RuntimeStats

__all__ = [
    "OUTPUTS",
    "Chunk",
    "CostModel",
    "Embedder",
    "EmbedderSettings",
    "EmbeddingResult",
    "RerankError",
    "Reranker",
    "RuntimeStats",
    "format_bytes",
    "parse_bytes",
]
