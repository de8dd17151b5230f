"""From a last hidden state to dense, sparse and ColBERT outputs, as FlagEmbedding computes them.

The sparse head gives one weight per token position ([batch, seq]); weights are
folded into ``token id -> max weight`` per sequence on the host. Nothing here
builds a [batch, seq, vocab] tensor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

Pooling = Literal["cls", "mean", "last_token"]
POOLINGS: tuple[str, ...] = ("cls", "mean", "last_token")

# special tokens whose weight BGE-M3 never reports in its lexical weights
_UNUSED_SPECIAL_TOKENS = ("cls_token", "eos_token", "pad_token", "unk_token")


def pool(hidden: torch.Tensor, mask: torch.Tensor, method: str) -> torch.Tensor:
    """One vector per sequence (right padding assumed, as everywhere in embedq)."""
    if method == "cls":
        return hidden[:, 0]
    if method == "mean":
        # summed in fp32 (the float mask promotes), as half-precision sums drift
        summed = torch.sum(hidden * mask.unsqueeze(-1).float(), dim=1)
        return summed / mask.sum(dim=1, keepdim=True).float()
    if method == "last_token":
        last = mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"unknown pooling {method!r}; expected one of {POOLINGS}")


def dense_vectors(
    hidden: torch.Tensor, mask: torch.Tensor, *, pooling: str, normalize: bool
) -> npt.NDArray[np.float32]:
    vectors = pool(hidden, mask, pooling)
    if normalize:
        vectors = F.normalize(vectors, dim=-1)
    return to_float32(vectors)


def token_weights(hidden: torch.Tensor, sparse_linear: torch.nn.Module) -> npt.NDArray[np.float32]:
    """BGE-M3's per-position lexical weight: relu of a linear map to one number."""
    return to_float32(torch.relu(sparse_linear(hidden)).squeeze(-1))


def colbert_vectors(
    hidden: torch.Tensor,
    colbert_linear: torch.nn.Module,
    lengths: Sequence[int],
    *,
    normalize: bool,
) -> list[npt.NDArray[np.float32]]:
    """One vector per token after the first ([CLS]), the final separator included."""
    vectors = colbert_linear(hidden[:, 1:])
    if normalize:
        vectors = F.normalize(vectors, dim=-1)
    host = to_float32(vectors)
    return [host[row, : length - 1] for row, length in enumerate(lengths)]


def unused_token_ids(tokenizer: Any) -> frozenset[int]:
    ids = set()
    for name in _UNUSED_SPECIAL_TOKENS:
        token = tokenizer.special_tokens_map.get(name)
        if token is not None:
            ids.add(int(tokenizer.convert_tokens_to_ids(token)))
    return frozenset(ids)


def lexical_weights(
    weights: npt.NDArray[np.float32], input_ids: Sequence[int], unused: Iterable[int]
) -> dict[int, float]:
    """The largest positive weight of each token id in one sequence, special tokens left out."""
    ids = np.asarray(input_ids, dtype=np.int64)
    row = weights[: len(ids)]
    keep = (row > 0) & ~np.isin(ids, np.fromiter(unused, dtype=np.int64))
    ids, row = ids[keep], row[keep]
    if ids.size == 0:
        return {}
    order = np.lexsort((row, ids))  # by id, then weight: each id's last entry is its largest
    ids, row = ids[order], row[order]
    last_of_id = np.r_[ids[1:] != ids[:-1], True]
    return dict(zip(ids[last_of_id].tolist(), row[last_of_id].tolist(), strict=True))


def to_float32(tensor: torch.Tensor) -> npt.NDArray[np.float32]:
    """Move to the host first, then widen, so the device never holds an fp32 copy."""
    return tensor.detach().to("cpu").float().numpy()
