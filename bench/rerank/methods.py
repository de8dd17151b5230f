"""The three methods: embedq's ``Reranker`` and FlagEmbedding's ``FlagReranker`` at two sizes."""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.rerank.config import LOGGER
from bench.rerank.workload import Pair

logger = logging.getLogger(LOGGER)

# ids below this are special tokens in both BERT's and XLM-R's layouts
FIRST_ORDINARY_ID = 5

Scores = list[float | None]  # None: the pair got no score


@dataclass(frozen=True)
class Options:
    """What every method shares."""

    device: str
    budget: str
    max_length: int

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")


class Stopwatch:
    """Seconds spent inside a wrapped callable, summed over calls."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed


class EmbedqMethod:
    """``Reranker.score_each`` on a set, timed by stage through wrappers on the same objects."""

    def __init__(self, folder: Path, options: Options) -> None:
        from embedq.models import Reranker

        self.reranker = Reranker.load(
            folder,
            device=options.device,
            memory_budget=options.budget,
            max_length=options.max_length,
        )
        # packing and forward passes (``runtime.map``), and the forwards alone (``_compute``,
        # which copies the logits to the host, so GPU work is finished when it returns);
        # the rest of ``score_each`` is checking and tokenising the pairs
        self.in_map, self.in_forward = Stopwatch(), Stopwatch()
        runtime = self.reranker.runtime
        runtime.map = self.in_map.wrap(runtime.map)  # type: ignore[method-assign]
        self.reranker._compute = self.in_forward.wrap(self.reranker._compute)  # type: ignore[method-assign]

    def score(self, pairs: Sequence[Pair]) -> Scores:
        scores, reasons = self.reranker.score_each(pairs)
        if reasons:
            first = min(reasons)
            logger.error(
                "embedq: %d pairs failed; pair %d: %s", len(reasons), first, reasons[first]
            )
        return scores

    def reset(self) -> None:
        from embedq.models import RuntimeStats

        self.reranker.runtime.stats = RuntimeStats()
        self.in_map.seconds = self.in_forward.seconds = 0.0

    def facts(self) -> dict[str, Any]:
        runtime = self.reranker.runtime
        return {
            "dtype": str(runtime.placement.dtype).removeprefix("torch."),
            "max_batch_size": runtime.limits.max_batch_size,
            "max_length_batch_fit": runtime.cost.max_batch(
                self.reranker.max_length, runtime.limits.activation_budget
            ),
        }

    def counters(self, seconds: float) -> dict[str, Any]:
        """Padding and passes since ``reset``, and where ``seconds`` of scoring went."""
        stats = self.reranker.stats
        tokens = stats.tokens
        return {
            "forward_passes": stats.forward_passes,
            "oom_events": stats.oom_events,
            "failed_sequences": stats.failed_sequences,
            "real_tokens": tokens.real_tokens,
            "padded_tokens": tokens.padded_tokens,
            "padding_efficiency": round(tokens.real_tokens / tokens.padded_tokens, 4)
            if tokens.padded_tokens
            else None,
            "time_shares": {
                "check_and_tokenize": round((seconds - self.in_map.seconds) / seconds, 4),
                "packing_and_splitting": round(
                    (self.in_map.seconds - self.in_forward.seconds) / seconds, 4
                ),
                "forward": round(self.in_forward.seconds / seconds, 4),
            },
        }

    def close(self) -> None:
        del self.reranker


def flag_default_batch() -> int:
    """``FlagReranker``'s own default batch size, read rather than assumed."""
    from FlagEmbedding import FlagReranker

    return int(inspect.signature(FlagReranker.__init__).parameters["batch_size"].default)


class FlagMethod:
    """``FlagReranker.compute_score`` as its users call it; ``batch_size`` None: its default."""

    def __init__(self, folder: Path, options: Options) -> None:
        from FlagEmbedding import FlagReranker

        self.options = options
        self.flag = FlagReranker(str(folder), use_fp16=options.on_gpu, devices=options.device)
        self.batch_size: int | None = None

    def score(self, pairs: Sequence[Pair]) -> Scores:
        extra = {} if self.batch_size is None else {"batch_size": self.batch_size}
        try:
            scores = self.flag.compute_score(
                list(pairs), max_length=self.options.max_length, **extra
            )
        except Exception:
            logger.exception("FlagReranker failed a set of %d pairs", len(pairs))
            return [None] * len(pairs)
        if len(scores) != len(pairs):
            return [None] * len(pairs)
        return [float(s) if math.isfinite(s) else None for s in scores]

    def weight_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.flag.model.parameters())

    def forward_fits(self, batch: int) -> bool:
        """Whether one pass over ``batch`` random max-length pairs runs under the GPU cap."""
        import torch

        model = self.flag.model
        shape = (batch, self.options.max_length)
        vocab = int(model.config.vocab_size)
        ids = torch.randint(FIRST_ORDINARY_ID, vocab, shape, device=self.options.device)
        fits = True
        try:
            with torch.no_grad():  # as compute_score runs
                model(input_ids=ids, attention_mask=torch.ones_like(ids), return_dict=True)
            torch.cuda.synchronize(self.options.device)
        except torch.OutOfMemoryError:
            fits = False
        # outside the except block the failed pass's tensors are unreferenced and can go
        del ids
        torch.cuda.empty_cache()
        return fits

    def close(self) -> None:
        del self.flag
