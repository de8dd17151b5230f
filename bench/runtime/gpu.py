"""GPU efficiency: the matmul ceiling, embedq's model FLOPs, and the fraction of it they reach."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.runtime.corpus import Task
from bench.runtime.embedq_runner import EmbedqFacts
from bench.runtime.measure import now

MATMUL_SIZE = 8192


def matmul_peak_tflops(device: str, *, warmup: int = 3, repeats: int = 20) -> float:
    """What this GPU sustains on large bf16 matmuls: the ceiling model FLOPs are compared to."""
    import torch

    shape = (MATMUL_SIZE, MATMUL_SIZE)
    a = torch.randn(shape, device=device, dtype=torch.bfloat16)
    b = torch.randn(shape, device=device, dtype=torch.bfloat16)
    out = torch.empty(shape, device=device, dtype=torch.bfloat16)
    for _ in range(warmup):
        torch.matmul(a, b, out=out)
    started = now(device)
    for _ in range(repeats):
        torch.matmul(a, b, out=out)
    seconds = now(device) - started
    del a, b, out
    torch.cuda.empty_cache()
    return 2 * MATMUL_SIZE**3 * repeats / seconds / 1e12


def model_flops(lengths: Sequence[int], facts: EmbedqFacts) -> int:
    """Useful forward FLOPs: weights once per real token, attention per pair of real tokens."""
    linear = 2 * facts.encoder_params * sum(lengths)
    attention = 4 * facts.layers * facts.hidden * sum(n * n for n in lengths)
    return linear + attention


def gpu_efficiency(
    tasks: Sequence[Task], facts: EmbedqFacts, embedq: dict[str, Any], peak_tflops: float
) -> dict[str, Any]:
    lengths = [n for task in tasks for n in task.lengths]
    achieved = model_flops(lengths, facts) / embedq["seconds"] / 1e12
    return {
        "matmul_peak_tflops": round(peak_tflops, 1),
        "matmul": f"bf16 {MATMUL_SIZE}x{MATMUL_SIZE} @ {MATMUL_SIZE}x{MATMUL_SIZE}",
        "encoder_params": facts.encoder_params,
        "embedq_model_tflops": round(achieved, 1),
        "embedq_fraction_of_peak": round(achieved / peak_tflops, 4),
    }
