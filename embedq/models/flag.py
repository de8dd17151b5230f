"""Loading weights through FlagEmbedding, keeping only the torch modules.

FlagEmbedding knows how each model family is assembled (BGE-M3's ColBERT and
sparse heads, rerankers' classification head); embedq takes the modules it
builds and runs them itself on its own micro-batches.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from embedq.dependencies import import_checked
from embedq.errors import ModelLoadError

logger = logging.getLogger(__name__)


@dataclass
class EncoderModules:
    """A backbone, its tokenizer, and BGE-M3's heads when the model has them."""

    backbone: torch.nn.Module
    tokenizer: Any
    colbert_linear: torch.nn.Module | None = None
    sparse_linear: torch.nn.Module | None = None

    @property
    def config(self) -> Any:
        """The backbone's transformers configuration."""
        return self.backbone.config

    @property
    def parts(self) -> list[torch.nn.Module]:
        heads = (self.colbert_linear, self.sparse_linear)
        return [self.backbone, *(head for head in heads if head is not None)]

    def weight_bytes(self, dtype: torch.dtype | None = None) -> int:
        """Bytes held by every part's parameters and buffers.

        With ``dtype``, the bytes they will hold once ``to`` casts them: floating
        tensors at that precision, integer buffers (position ids) as they are.
        So a registry can size a model before its weights reach the device.
        """
        tensors = [t for part in self.parts for t in (*part.parameters(), *part.buffers())]
        return sum(t.numel() * _element_size(t, dtype) for t in tensors)

    def to(self, device: torch.device, dtype: torch.dtype) -> EncoderModules:
        for part in self.parts:
            part.to(device=device, dtype=dtype).eval()
        return self


def _element_size(tensor: torch.Tensor, dtype: torch.dtype | None) -> int:
    """Bytes per element of ``tensor`` after ``Module.to(dtype=dtype)``, which casts floats only."""
    if dtype is None or not tensor.is_floating_point():
        return tensor.element_size()
    return torch.empty((), dtype=dtype).element_size()


def load_m3(folder: Path, *, trust_remote_code: bool = False) -> EncoderModules:
    flag = _construct("BGEM3FlagModel", folder, trust_remote_code=trust_remote_code)
    wrapper = flag.model
    return EncoderModules(
        backbone=wrapper.model,
        tokenizer=flag.tokenizer,
        colbert_linear=wrapper.colbert_linear,
        sparse_linear=wrapper.sparse_linear,
    )


def load_dense(folder: Path, *, trust_remote_code: bool = False) -> EncoderModules:
    flag = _construct("FlagModel", folder, trust_remote_code=trust_remote_code)
    return EncoderModules(backbone=flag.model, tokenizer=flag.tokenizer)


def load_cross_encoder(folder: Path, *, trust_remote_code: bool = False) -> EncoderModules:
    flag = _construct("FlagReranker", folder, trust_remote_code=trust_remote_code)
    return EncoderModules(backbone=flag.model, tokenizer=flag.tokenizer)


def _construct(class_name: str, folder: Path, *, trust_remote_code: bool) -> Any:
    """A FlagEmbedding model built on the CPU in fp32; embedq moves and casts it itself."""
    # outside the try: an unsupported or broken install is its own one-line error
    flag_class = getattr(import_checked("FlagEmbedding", package="FlagEmbedding"), class_name)
    # FlagEmbedding and transformers print load reports to stdout; keep them in the log
    report = io.StringIO()
    try:
        with contextlib.redirect_stdout(report):
            flag = flag_class(
                str(folder), use_fp16=False, devices="cpu", trust_remote_code=trust_remote_code
            )
    except Exception as error:
        raise ModelLoadError(f"cannot load model from {folder}: {error}") from error
    if report.getvalue().strip():
        logger.debug("%s said while loading: %s", class_name, report.getvalue().strip())
    return flag
