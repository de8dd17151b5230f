"""How close to the machine's arithmetic limit each method runs (CPU runs).

A cross-encoder's forward pass is matrix products: counting its floating-point
operations for the workload's real tokens, and timing plain fp32 matrix products
of the model's own shapes on the same device, bounds the pairs/s any method could
reach there. On a CPU, where memory is no constraint, that bound decides whether a
speed-up over FlagReranker is possible at all.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MATMUL_SECONDS = 2.0  # timed per shape, after a warm-up
MATMUL_ROWS = 4096  # tokens in one product: a batch of 8 pairs at 512


@dataclass(frozen=True)
class EncoderSize:
    hidden: int
    layers: int
    intermediate: int

    @classmethod
    def of(cls, folder: Path) -> EncoderSize:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(folder))
        return cls(config.hidden_size, config.num_hidden_layers, config.intermediate_size)

    def pair_flops(self, tokens: int) -> int:
        """Multiply-adds x 2 of one pair's forward pass: the linear layers (Q, K, V, output
        and the two feed-forward ones) for every token, and attention's QK^T and AV."""
        linear = 4 * self.hidden * self.hidden + 2 * self.hidden * self.intermediate
        attention = 2 * tokens * tokens * self.hidden
        return 2 * self.layers * (linear * tokens + attention)


def matmul_gflops(size: EncoderSize) -> dict[str, float]:
    """Sustained fp32 GFLOP/s of plain matrix products of the encoder's shapes (CPU)."""
    import torch

    shapes = {
        "attention projection": (size.hidden, size.hidden),
        "feed-forward up": (size.hidden, size.intermediate),
        "feed-forward down": (size.intermediate, size.hidden),
    }
    found = {}
    for name, (inner, outer) in shapes.items():
        left, right = torch.randn(MATMUL_ROWS, inner), torch.randn(inner, outer)
        for _ in range(3):
            left @ right
        started, products = time.perf_counter(), 0
        while time.perf_counter() - started < MATMUL_SECONDS:
            left @ right
            products += 1
        seconds = time.perf_counter() - started
        found[name] = round(2 * MATMUL_ROWS * inner * outer * products / seconds / 1e9, 1)
    return found


def compute_bound(
    size: EncoderSize, lengths: Sequence[int], seconds: dict[str, float], pairs: int
) -> dict[str, Any]:
    """Each method's GFLOP/s against the best matrix-product rate, and the pairs/s bound."""
    flops = sum(size.pair_flops(n) for n in lengths)
    rates = matmul_gflops(size)
    best = max(rates.values())
    at_peak = pairs / (flops / (best * 1e9))
    return {
        "forward_gflop": round(flops / 1e9, 1),
        "counted": "2 x multiply-adds of the linear layers and attention's QK^T and AV, over "
        "each pair's real tokens; embeddings, norms, softmax and padding left out",
        "matmul_gflops": rates,
        "matmul_gflops_best": best,
        "methods": {
            name: {
                "gflops": round(flops / s / 1e9, 1),
                "share_of_matmul_best": round(flops / s / 1e9 / best, 3),
                "pairs_per_s": round(pairs / s, 2),
            }
            for name, s in seconds.items()
        },
        "pairs_per_s_at_matmul_best": round(at_peak, 2),
        "most_any_method_could_gain_over": {
            name: round(at_peak / (pairs / s), 2) for name, s in seconds.items()
        },
    }
