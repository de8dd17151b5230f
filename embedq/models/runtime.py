"""The engine shared by embedders and rerankers: pack, pad, run, split on OOM.

A caller hands over token sequences and a ``compute`` function that turns a
padded batch into one output per sequence; the runtime sorts and packs them
under the memory budget, runs every micro-batch under ``torch.inference_mode``,
recovers from out-of-memory errors by halving, and returns the outputs in the
caller's order (or a :class:`NoFit` for a sequence that fits nowhere).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import torch

from embedq.errors import InvalidSettingError
from embedq.models.device import Placement, free_memory
from embedq.models.flag import EncoderModules
from embedq.models.memory import ArchitectureShape, CostModel, format_bytes
from embedq.models.packing import PackingLimits, PaddingTally, pack
from embedq.models.splitting import NoFit, SplitRunner

logger = logging.getLogger(__name__)

Output = TypeVar("Output")
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class TokenSequence:
    """One model input, special tokens included; token types only for pairs."""

    input_ids: list[int]
    token_type_ids: list[int] | None = None

    @property
    def length(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class PaddedBatch:
    """Right-padded tensors on the model's device, and each row's real length."""

    inputs: dict[str, torch.Tensor]
    lengths: list[int]

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.lengths), max(self.lengths)


@dataclass
class RuntimeStats:
    """Counters over the life of a runtime (or since the last reset)."""

    forward_passes: int = 0
    sequences: int = 0
    failed_sequences: int = 0
    oom_events: int = 0
    tokens: PaddingTally = field(default_factory=PaddingTally)


class EncoderRuntime:
    """Runs an encoder over many sequences within one memory budget."""

    def __init__(
        self,
        *,
        placement: Placement,
        cost: CostModel,
        limits: PackingLimits,
        pad_token_id: int,
    ) -> None:
        self.placement = placement
        self.cost = cost
        self.limits = limits
        self.pad_token_id = pad_token_id
        self.stats = RuntimeStats()

    def map(
        self,
        sequences: Sequence[TokenSequence],
        compute: Callable[[PaddedBatch], Sequence[Output]],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> list[Output | NoFit]:
        """``compute`` over every sequence, in micro-batches; results in input order.

        An exception raised by ``on_progress`` (a cancelled job) stops the work and
        propagates unchanged; it is raised between passes, so the runtime stays usable.
        """
        results: list[Output | NoFit | None] = [None] * len(sequences)
        runner: SplitRunner[int, Output] = SplitRunner(
            forward=lambda part: self._forward([sequences[i] for i in part], compute),
            on_oom=lambda part: self._after_oom([sequences[i] for i in part]),
            too_big=lambda index: self._too_big_reason(sequences[index]),
        )
        done = 0
        for micro_batch in pack([s.length for s in sequences], self.cost, self.limits):
            for index, outcome in zip(micro_batch, runner.run(micro_batch), strict=True):
                results[index] = outcome
                self.stats.failed_sequences += isinstance(outcome, NoFit)
            done += len(micro_batch)
            if on_progress is not None:
                on_progress(done, len(sequences))
        self.stats.sequences += len(sequences)
        return [result for result in results if result is not None]

    def pad(self, sequences: Sequence[TokenSequence]) -> PaddedBatch:
        lengths = [s.length for s in sequences]
        width = max(lengths)
        ids = torch.full((len(sequences), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        types = None
        if sequences[0].token_type_ids is not None:
            types = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            ids[row, : sequence.length] = torch.tensor(sequence.input_ids)
            mask[row, : sequence.length] = 1
            if types is not None and sequence.token_type_ids is not None:
                types[row, : sequence.length] = torch.tensor(sequence.token_type_ids)
        inputs = {"input_ids": ids, "attention_mask": mask}
        if types is not None:
            inputs["token_type_ids"] = types
        device = self.placement.device
        return PaddedBatch({k: v.to(device, non_blocking=True) for k, v in inputs.items()}, lengths)

    def set_activation_budget(self, budget: float) -> None:
        """Plan micro-batches for a new activation budget (weights came or went beside it)."""
        self.limits = replace(self.limits, activation_budget=budget)

    def _forward(
        self, part: Sequence[TokenSequence], compute: Callable[[PaddedBatch], Sequence[Output]]
    ) -> Sequence[Output]:
        batch = self.pad(part)
        with torch.inference_mode():
            outputs = compute(batch)
        self.stats.forward_passes += 1
        self.stats.tokens.add(batch.lengths)
        return outputs

    def _after_oom(self, part: Sequence[TokenSequence]) -> None:
        free_memory(self.placement.device)
        self.stats.oom_events += 1
        width = max(s.length for s in part)
        self.cost.learn_from_oom(len(part), width, self.limits.activation_budget)

    def _too_big_reason(self, sequence: TokenSequence) -> str:
        return (
            f"a sequence of {sequence.length} tokens does not fit the memory budget of "
            f"{format_bytes(self.placement.budget)} on {self.placement.device}, even alone"
        )


# Share of what the weights leave of the budget that activations may plan for;
# the rest absorbs the caching allocator's fragmentation on a GPU.
GPU_ACTIVATION_SHARE = 0.9
DEFAULT_MAX_BATCH_SIZE = {"cuda": 512, "cpu": 128}
# On the CPU, batches past a couple of thousand tokens fall out of cache and run slower
# (all-MiniLM-L6-v2 on 2 cores: 2,048 tokens ~15% faster than 8,192).
DEFAULT_CPU_BATCH_TOKENS = 2048


def activation_budget(placement: Placement, resident_bytes: int) -> float:
    """What activations may plan for once ``resident_bytes`` of weights sit in the budget.

    Zero or less when the weights alone fill the budget.
    """
    spare = placement.budget - resident_bytes
    return spare * GPU_ACTIVATION_SHARE if placement.is_cuda else float(spare)


def cost_prior(config: Any, dtype: torch.dtype, *, extra_per_token: int = 0) -> CostModel:
    """The analytic cost model of an encoder of this configuration run in ``dtype``."""
    dtype_bytes = torch.empty((), dtype=dtype).element_size()
    shape = ArchitectureShape.from_config(config, dtype_bytes=dtype_bytes)
    return CostModel.from_architecture(shape, extra_per_token=extra_per_token)


def build_runtime(
    *,
    placement: Placement,
    modules: EncoderModules,
    extra_per_token: int = 0,
    max_batch_size: int | None = None,
    max_batch_tokens: int | None = None,
    resident_bytes: int | None = None,
) -> EncoderRuntime:
    """A runtime whose activation budget is what the resident weights leave of the budget.

    ``resident_bytes`` counts every model's weights on the device (a registry's
    sum); None counts only these modules', as for a model alone in its budget.
    """
    weights = modules.weight_bytes() if resident_bytes is None else resident_bytes
    budget = activation_budget(placement, weights)
    if budget <= 0:
        raise InvalidSettingError(
            f"memory budget {format_bytes(placement.budget)} does not even hold the model's "
            f"weights ({format_bytes(weights)})"
        )
    on_gpu = placement.is_cuda
    limits = PackingLimits(
        activation_budget=budget,
        max_batch_size=max_batch_size or DEFAULT_MAX_BATCH_SIZE["cuda" if on_gpu else "cpu"],
        max_batch_tokens=max_batch_tokens or (None if on_gpu else DEFAULT_CPU_BATCH_TOKENS),
    )
    cost = cost_prior(modules.config, placement.dtype, extra_per_token=extra_per_token)
    logger.info(
        "weights %s, activation budget %s on %s (%s)",
        format_bytes(weights),
        format_bytes(limits.activation_budget),
        placement.device,
        placement.dtype,
    )
    pad_token_id = int(modules.tokenizer.pad_token_id or 0)
    return EncoderRuntime(placement=placement, cost=cost, limits=limits, pad_token_id=pad_token_id)
