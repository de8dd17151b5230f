"""Length buckets and micro-batches sized by predicted peak memory.

Sequences are sorted longest first and packed greedily: each micro-batch is
padded to its first (longest) member, and grows while the cost model predicts
it still fits the activation budget. Short texts thus travel in big batches,
long ones in small batches, and padding stays close to zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from embedq.models.memory import CostModel


@dataclass(frozen=True)
class PackingLimits:
    """What bounds a micro-batch besides memory."""

    activation_budget: float
    max_batch_size: int
    # tokens (batch x padded length) per forward pass; on the CPU, past a few
    # thousand tokens bigger batches only add memory traffic
    max_batch_tokens: int | None = None


def pack(lengths: Sequence[int], cost: CostModel, limits: PackingLimits) -> list[list[int]]:
    """Group indices of ``lengths`` into micro-batches, longest first.

    A sequence predicted not to fit even alone still gets a batch of its own:
    the prediction may be pessimistic, and if it is not, the OOM handler fails
    that sequence alone with a reason.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    position = 0
    while position < len(order):
        padded = lengths[order[position]]
        size = _batch_size_for(padded, cost, limits)
        batches.append(order[position : position + size])
        position += size
    return batches


def _batch_size_for(padded_length: int, cost: CostModel, limits: PackingLimits) -> int:
    size = min(cost.max_batch(padded_length, limits.activation_budget), limits.max_batch_size)
    if limits.max_batch_tokens is not None:
        size = min(size, limits.max_batch_tokens // max(padded_length, 1))
    return max(size, 1)


@dataclass
class PaddingTally:
    """Real against padded tokens over many micro-batches."""

    real_tokens: int = 0
    padded_tokens: int = 0

    def add(self, lengths: Sequence[int]) -> None:
        self.real_tokens += sum(lengths)
        self.padded_tokens += max(lengths, default=0) * len(lengths)

    @property
    def padding_fraction(self) -> float:
        """Share of computed positions that were padding (0.0 is perfect)."""
        if self.padded_tokens == 0:
            return 0.0
        return 1.0 - self.real_tokens / self.padded_tokens
