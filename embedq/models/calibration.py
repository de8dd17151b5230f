"""Measuring a model's real peak memory at load time, and fitting the cost model to it.

On a GPU, a few probe passes over random tokens of chosen shapes show what the
analytic prior cannot know: the attention kernel in use, the allocator's
rounding, the heads' and output copies' share. The CPU has no allocator
statistics to read, so there the prior stands (and OOM learning still applies).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

from embedq.models.memory import format_bytes
from embedq.models.runtime import EncoderRuntime, PaddedBatch, TokenSequence

logger = logging.getLogger(__name__)

PROBE_LENGTHS = (64, 256, 1024, 4096)
# probes aim at this share of the activation budget, leaving room for a bad prior
PROBE_SHARE = 0.35


def probe_lengths(max_length: int) -> list[int]:
    return sorted({min(length, max_length) for length in (*PROBE_LENGTHS, max_length)})


def calibrate(
    runtime: EncoderRuntime,
    compute: Callable[[PaddedBatch], Any],
    *,
    max_length: int,
    vocab_size: int,
) -> list[tuple[int, int, float]]:
    """Probe, fit, log, and return the ``(batch, length, peak_bytes)`` samples."""
    device = runtime.placement.device
    if device.type != "cuda":
        logger.info("no calibration on %s: batches are sized by the analytic cost model", device)
        return []
    samples = []
    generator = torch.Generator().manual_seed(0)
    for length in probe_lengths(max_length):
        budget = runtime.limits.activation_budget * PROBE_SHARE
        batch = max(1, min(runtime.cost.max_batch(length, budget), runtime.limits.max_batch_size))
        ids = torch.randint(5, vocab_size, (batch, length), generator=generator).tolist()
        peak = measure_peak(runtime, [TokenSequence(row) for row in ids], compute)
        if peak is not None:
            samples.append((batch, length, float(peak)))
    if samples:
        runtime.cost.fit(samples)
        _log_fit(runtime, samples)
    return samples


def measure_peak(
    runtime: EncoderRuntime,
    sequences: Sequence[TokenSequence],
    compute: Callable[[PaddedBatch], Any],
) -> int | None:
    """Peak bytes allocated above the resting level during one pass; None if it ran out."""
    device = runtime.placement.device
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    resting = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    try:
        with torch.inference_mode():
            compute(runtime.pad(sequences))
        torch.cuda.synchronize(device)
    except torch.OutOfMemoryError:
        out_of_memory = True
    else:
        out_of_memory = False
    if out_of_memory:
        torch.cuda.empty_cache()
        width = max(s.length for s in sequences)
        runtime.cost.learn_from_oom(len(sequences), width, runtime.limits.activation_budget)
        return None
    return torch.cuda.max_memory_allocated(device) - resting


def _log_fit(runtime: EncoderRuntime, samples: Sequence[tuple[int, int, float]]) -> None:
    probes = ", ".join(f"{b}x{n}: {format_bytes(p)}" for b, n, p in samples)
    cost = runtime.cost
    logger.info(
        "calibrated peak memory: %.0f B/token + %.2f B/token^2 (probes %s); "
        "activation budget %s fits %d x 512 tokens",
        cost.per_token,
        cost.per_token_pair,
        probes,
        format_bytes(runtime.limits.activation_budget),
        cost.max_batch(512, runtime.limits.activation_budget),
    )
