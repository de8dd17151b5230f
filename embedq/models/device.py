"""Which device and precision a model runs on, and the budget enforced there."""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass

import torch

from embedq.errors import InvalidSettingError
from embedq.models.memory import format_bytes, parse_bytes

logger = logging.getLogger(__name__)

# Without a budget, a GPU worker may use this share of its card; the rest is
# left for the CUDA context, the caching allocator's fragmentation and tools.
DEFAULT_GPU_SHARE = 0.9
# On the CPU the budget only sizes batches (nothing enforces it); this keeps
# attention score tensors of long batches from swapping a small machine.
DEFAULT_CPU_BUDGET = "4GiB"


@dataclass(frozen=True)
class Placement:
    """Where a model runs, in which precision, and under which memory budget (bytes)."""

    device: torch.device
    dtype: torch.dtype
    budget: int

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device asked for, or the first CUDA device when there is one, else the CPU."""
    if device is None:
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidSettingError(f"device {device!r} asked for, but CUDA is not available")
        if resolved.index is None:
            resolved = torch.device("cuda", torch.cuda.current_device())
    return resolved


def choose_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """bf16 on GPUs that support it, else fp16; fp32 on the CPU, where half precision is slow."""
    if dtype is not None:
        return getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def place(
    device: str | torch.device | None,
    memory_budget: int | float | str | None,
    dtype: str | torch.dtype | None = None,
) -> Placement:
    """Resolve device, precision and budget, and enforce the budget on a GPU."""
    resolved = resolve_device(device)
    budget = _resolve_budget(resolved, memory_budget)
    if resolved.type == "cuda":
        _enforce_gpu_budget(resolved, budget)
    return Placement(device=resolved, dtype=choose_dtype(resolved, dtype), budget=budget)


def _resolve_budget(device: torch.device, memory_budget: int | float | str | None) -> int:
    if device.type != "cuda":
        return parse_bytes(memory_budget if memory_budget is not None else DEFAULT_CPU_BUDGET)
    total = torch.cuda.get_device_properties(device).total_memory
    if memory_budget is None:
        return int(total * DEFAULT_GPU_SHARE)
    budget = parse_bytes(memory_budget)
    if budget > total:
        raise InvalidSettingError(
            f"memory budget {format_bytes(budget)} exceeds {device}'s {format_bytes(total)}"
        )
    return budget


def _enforce_gpu_budget(device: torch.device, budget: int) -> None:
    """Cap this process's caching allocator, so going over the budget is an OOM, not a surprise."""
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(budget / total, device)
    logger.info("memory budget %s of %s on %s", format_bytes(budget), format_bytes(total), device)


# A full collection walks every object torch and transformers made (0.3 s a call on a
# 2-core CPU, paid at every OOM of a split storm); what a failed pass leaves in cycles (its
# traceback's frames and the tensors they hold) is new, so the young generations hold it.
YOUNG_GENERATIONS = 1


def free_memory(device: torch.device) -> None:
    """Give cached blocks back after an OOM, so the retry starts from a clean allocator."""
    gc.collect(YOUNG_GENERATIONS)
    if device.type == "cuda":
        torch.cuda.empty_cache()


def allocated_bytes(device: torch.device) -> int:
    """Bytes the allocator holds for tensors now (0 where that cannot be measured)."""
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
