"""A null model with BGE-M3's output sizes: random unit 1024-d dense and ~60 sparse weights a text.

It costs next to nothing, so a pipeline around it is bounded by everything else:
the ledger, the producer and, above all, writing 1024-d points to Qdrant.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from bench.pipeline.config import NULL_DENSE_DIM, NULL_SPARSE_TOKENS, NULL_VOCAB
from embedq.models import Chunk, EmbeddingResult
from embedq.models.loading import M3_HEAD_FILES


class NullEmbedder:
    """``embed`` as the runtime's, from a seeded generator: the same calls give the same vectors.

    ``calls`` records each call's size and a checksum of its texts, so two runs can show
    that they embedded the same batches in the same order (and so got the same vectors).
    """

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self.calls: list[tuple[int, int]] = []

    def embed(
        self, texts: Sequence[object], *, on_progress: Callable[[int, int], None] | None = None
    ) -> list[EmbeddingResult]:
        count = len(texts)
        self.calls.append((count, _checksum(texts)))
        dense = self._rng.standard_normal((count, NULL_DENSE_DIM), dtype=np.float32)
        dense /= np.linalg.norm(dense, axis=1, keepdims=True)
        ids = self._rng.integers(0, NULL_VOCAB, (count, NULL_SPARSE_TOKENS)).tolist()
        weights = self._rng.random((count, NULL_SPARSE_TOKENS), dtype=np.float32).tolist()
        if on_progress is not None:  # one "micro-batch": a cancelled batch stops here
            on_progress(count, count)
        return [
            EmbeddingResult([_chunk(dense[row], dict(zip(ids[row], weights[row], strict=True)))])
            for row in range(count)
        ]


def _chunk(dense: np.ndarray, sparse: dict[int, float]) -> Chunk:
    # repeated token ids collapse, so "about" 60 weights
    return Chunk(dense, sparse, None, start=None, end=None, num_tokens=len(sparse))


def _checksum(texts: Sequence[object]) -> int:
    return zlib.crc32("\x00".join(map(str, texts)).encode())


@contextlib.contextmanager
def null_model_folder() -> Iterator[Path]:
    """A folder the producer takes for a BGE-M3-shaped model: config and head files, no weights.

    The producer reads only these to shape the collection (1024-d dense, sparse);
    the worker never loads it, since the null model is injected in its place.
    """
    config = {"model_type": "xlm-roberta", "hidden_size": NULL_DENSE_DIM, "vocab_size": NULL_VOCAB}
    with tempfile.TemporaryDirectory(prefix="embedq-null-model-") as folder:
        path = Path(folder)
        (path / "config.json").write_text(json.dumps(config), encoding="utf-8")
        for head in M3_HEAD_FILES:
            (path / head).touch()
        yield path
