"""embedq's ``Embedder`` as a benchmark method, and the facts the other methods take from it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.runtime.config import LOGGER
from bench.runtime.corpus import Workload
from bench.runtime.measure import bucket_throughput, method_entry, timed_pass
from bench.runtime.models import Setup, release_memory

logger = logging.getLogger(LOGGER)


@dataclass(frozen=True)
class EmbedqFacts:
    """What the other methods and the report take from embedq's loaded model."""

    pooling: str
    normalize: bool
    dtype: str
    # largest batch of max_length sequences embedq's cost model fits in the budget
    fit_limit: int
    encoder_params: int
    layers: int
    hidden: int


class EmbedqRunner:
    def __init__(self, setup: Setup) -> None:
        from embedq.models import Embedder

        self.setup = setup
        self.embedder = Embedder.load(
            setup.model_path,
            device=setup.device,
            memory_budget=setup.budget,
            max_length=setup.max_length,
            long_text="truncate",
            outputs=list(setup.outputs),
        )

    def encode(self, texts: list[str]) -> int:
        return sum(not _embedded(result) for result in self.embedder.embed(texts))

    def reset_counters(self) -> None:
        from embedq.models import RuntimeStats

        self.embedder.runtime.stats = RuntimeStats()

    def counters(self, real_tokens: int) -> dict[str, Any]:
        stats = self.embedder.stats
        if stats.tokens.real_tokens != real_tokens:
            logger.warning(
                "embedq ran %d real tokens, the tokenizer count is %d: truncation differs",
                stats.tokens.real_tokens,
                real_tokens,
            )
        return {
            "padding_fraction": stats.tokens.padding_fraction,
            "oom_events": stats.oom_events,
            "failed_sequences": stats.failed_sequences,
            "forward_passes": stats.forward_passes,
            "runtime_real_tokens": stats.tokens.real_tokens,
            "runtime_padded_tokens": stats.tokens.padded_tokens,
        }

    def facts(self) -> EmbedqFacts:
        runtime, backbone = self.embedder.runtime, self.embedder.modules.backbone
        config = backbone.config
        return EmbedqFacts(
            pooling=self.embedder.settings.pooling,
            normalize=self.embedder.settings.normalize,
            dtype=str(runtime.placement.dtype).removeprefix("torch."),
            fit_limit=runtime.cost.max_batch(
                self.setup.max_length, runtime.limits.activation_budget
            ),
            encoder_params=per_token_params(backbone),
            layers=int(config.num_hidden_layers),
            hidden=int(config.hidden_size),
        )

    def close(self) -> None:
        del self.embedder


def _embedded(result: Any) -> bool:
    """A result counts only with a chunk and, where asked for, finite dense vectors."""
    if not result.ok or not result.chunks:
        return False
    dense = [chunk.dense for chunk in result.chunks if chunk.dense is not None]
    return all(np.isfinite(vector).all() for vector in dense)


def per_token_params(backbone: Any) -> int:
    """Parameters every token passes through: the transformer layers.

    Embedding tables are lookups, and the pooler sees one token per sequence, so
    neither belongs in ``2 * tokens * params``.
    """
    encoder = getattr(backbone, "encoder", None)
    if encoder is not None:
        return sum(p.numel() for p in encoder.parameters())
    table = backbone.get_input_embeddings()
    return sum(p.numel() for p in backbone.parameters()) - table.weight.numel()


def measure_embedq(
    setup: Setup, workload: Workload
) -> tuple[dict[str, Any], list[float], EmbedqFacts]:
    runner = EmbedqRunner(setup)
    try:
        runner.encode(workload.warmup)
        entry = method_entry(
            runner, timed_pass(runner, workload.tasks, setup.device), workload.tasks
        )
        rates = bucket_throughput(runner, workload.buckets, setup.device)
        return entry, rates, runner.facts()
    finally:
        runner.close()
        release_memory(setup.device)
