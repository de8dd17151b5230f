"""What an embedder returns: one result per input text, each with its chunks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

OUTPUTS = ("dense", "sparse", "colbert")


@dataclass(frozen=True)
class Chunk:
    """One window of a text and its vectors (None for an output not asked for)."""

    dense: npt.NDArray[np.float32] | None
    sparse: dict[int, float] | None
    colbert: npt.NDArray[np.float32] | None
    # character span of the chunk in its text; None when the tokenizer gives no offsets
    start: int | None
    end: int | None
    num_tokens: int


@dataclass(frozen=True)
class EmbeddingResult:
    """The chunks of one text, or the reason it could not be embedded (then no chunks)."""

    chunks: list[Chunk] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
