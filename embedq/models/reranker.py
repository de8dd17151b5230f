"""The reranker: (query, passage) pairs in, relevance scores out, within a memory budget.

Inputs are built as FlagEmbedding's ``FlagReranker.compute_score`` builds them:
the query cut to three quarters of ``max_length``, the passage cut so the pair
with its special tokens fits ``max_length``; scores are the raw logits unless
``normalize=True`` applies a sigmoid. Thousands of candidates for one query are
no special case: pairs are packed and split on OOM like any other sequences.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from embedq.errors import InvalidSettingError, PermanentError
from embedq.models import flag, tokens
from embedq.models.calibration import calibrate
from embedq.models.device import Placement, place
from embedq.models.loading import resolve_model_dir, usable_max_length
from embedq.models.runtime import (
    EncoderRuntime,
    PaddedBatch,
    ProgressCallback,
    RuntimeStats,
    TokenSequence,
    build_runtime,
    cost_prior,
)
from embedq.models.splitting import NoFit
from embedq.models.tokens import SpecialTokens

logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 512


class RerankError(PermanentError, ValueError):
    """Some pairs could not be scored; ``reasons`` maps their positions to why."""

    def __init__(self, reasons: dict[int, str]) -> None:
        self.reasons = reasons
        first = min(reasons)
        super().__init__(
            f"{len(reasons)} pair(s) could not be scored; pair {first}: {reasons[first]}"
        )


class Reranker:
    """Scores (query, passage) pairs with a cross-encoder under a memory budget."""

    def __init__(
        self, *, modules: flag.EncoderModules, runtime: EncoderRuntime, max_length: int
    ) -> None:
        self.modules = modules
        self.runtime = runtime
        self.max_length = max_length
        self._special = SpecialTokens.learn(modules.tokenizer)
        self._uses_token_types = "token_type_ids" in modules.tokenizer.model_input_names

    @classmethod
    def load(
        cls,
        model: str | Path,
        *,
        device: str | torch.device | None = None,
        memory_budget: int | float | str | None = None,
        max_length: int | None = None,
        dtype: str | torch.dtype | None = None,
        max_batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        trust_remote_code: bool = False,
    ) -> Reranker:
        """Load a cross-encoder alone in its budget (a ``ModelRegistry`` shares one)."""
        placement = place(device, memory_budget, dtype)
        modules = read_cross_encoder(model, trust_remote_code=trust_remote_code)
        modules.to(placement.device, placement.dtype)
        return cls.over(
            modules,
            placement,
            max_length=pair_max_length(modules, max_length),
            max_batch_size=max_batch_size,
            max_batch_tokens=max_batch_tokens,
        )

    @classmethod
    def over(
        cls,
        modules: flag.EncoderModules,
        placement: Placement,
        *,
        max_length: int,
        resident_bytes: int | None = None,
        max_batch_size: int | None = None,
        max_batch_tokens: int | None = None,
    ) -> Reranker:
        """A reranker with its own runtime over modules already on ``placement``.

        ``resident_bytes`` counts every model's weights in the budget (None: only
        these modules'), as ``build_runtime`` explains.
        """
        runtime = build_runtime(
            placement=placement,
            modules=modules,
            max_batch_size=max_batch_size,
            max_batch_tokens=max_batch_tokens,
            resident_bytes=resident_bytes,
        )
        reranker = cls(modules=modules, runtime=runtime, max_length=max_length)
        vocab_size = int(modules.config.vocab_size)
        calibrate(runtime, reranker._compute, max_length=max_length, vocab_size=vocab_size)
        return reranker

    @property
    def stats(self) -> RuntimeStats:
        return self.runtime.stats

    def score(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        normalize: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> list[float]:
        """One score per pair, in input order.

        Raises :class:`RerankError` (after scoring every other pair) if a pair is
        malformed or does not fit the budget even alone; its ``reasons`` say which.
        """
        scores, reasons = self.score_each(pairs, normalize=normalize, on_progress=on_progress)
        if reasons:
            raise RerankError(reasons)
        return [score for score in scores if score is not None]

    def score_each(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        normalize: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> tuple[list[float | None], dict[int, str]]:
        """Scores (None where a pair failed) and the reasons for the failures."""
        reasons: dict[int, str] = {}
        valid = []
        for index, pair in enumerate(pairs):
            problem = _pair_problem(pair)
            if problem is None:
                valid.append(index)
            else:
                reasons[index] = problem
        sequences = self._encode_pairs([pairs[i] for i in valid])
        outcomes = self.runtime.map(sequences, self._compute, on_progress=on_progress)
        scores: list[float | None] = [None] * len(pairs)
        for index, outcome in zip(valid, outcomes, strict=True):
            if isinstance(outcome, NoFit):
                reasons[index] = outcome.reason
            else:
                scores[index] = _sigmoid(outcome) if normalize else outcome
        return scores, reasons

    def _encode_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[TokenSequence]:
        if not pairs:
            return []
        tokenizer = self.modules.tokenizer
        queries = tokens.tokenize(
            tokenizer, [q for q, _ in pairs], truncate_to=self.max_length * 3 // 4
        )
        passages = tokens.tokenize(tokenizer, [p for _, p in pairs], truncate_to=self.max_length)
        return [self._pair(q.ids, p.ids) for q, p in zip(queries, passages, strict=True)]

    def _pair(self, query: list[int], passage: list[int]) -> TokenSequence:
        room = self.max_length - self._special.pair_count - len(query)
        if 0 < room < len(passage):  # 'only_second' truncation; a query too long is left as is
            passage = passage[:room]
        ids, types = self._special.wrap_pair(query, passage)
        return TokenSequence(ids, types if self._uses_token_types else None)

    def _compute(self, batch: PaddedBatch) -> list[float]:
        logits = self.modules.backbone(**batch.inputs, return_dict=True).logits
        return [float(x) for x in logits.view(-1).float().cpu()]


def read_cross_encoder(
    model: str | Path, *, trust_remote_code: bool = False
) -> flag.EncoderModules:
    """Load a cross-encoder's modules on the CPU in fp32; the caller moves them."""
    folder = resolve_model_dir(model)
    return flag.load_cross_encoder(folder, trust_remote_code=trust_remote_code)


def pair_max_length(modules: flag.EncoderModules, max_length: int | None) -> int:
    """The longest (query, passage) input: as asked, else 512 or the model's limit if lower."""
    limit = usable_max_length(modules.tokenizer, modules.config)
    length = max_length or min(DEFAULT_MAX_LENGTH, limit)
    if not 8 <= length <= limit:
        raise InvalidSettingError(f"max_length must be between 8 and {limit}, got {length}")
    return length


def one_pair_peak(modules: flag.EncoderModules, max_length: int, dtype: torch.dtype) -> float:
    """Predicted activation bytes of one pair at ``max_length``: a reranker's least need."""
    return cost_prior(modules.config, dtype).predict(1, max_length)


def _pair_problem(pair: object) -> str | None:
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        return "a pair must be (query, passage)"
    for part, name in zip(pair, ("query", "passage"), strict=True):
        if not isinstance(part, str):
            return f"{name} must be a string, not {type(part).__name__}"
    return None


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    exp = math.exp(x)  # the other branch would overflow for very negative logits
    return exp / (1.0 + exp)
