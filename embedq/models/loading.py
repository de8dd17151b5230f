"""Finding a model (local folder or hub id) and reading how it wants to be run.

The weights themselves are loaded through FlagEmbedding; this module decides
which FlagEmbedding class fits the folder, and reads pooling, normalisation and
maximum length from the model's own files (sentence-transformers' when present).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedq.errors import ModelLoadError

logger = logging.getLogger(__name__)

M3_HEAD_FILES = ("colbert_linear.pt", "sparse_linear.pt")
# positions XLM-R-style models reserve before the first token (padding index + 1)
_POSITION_OFFSET_TYPES = {"roberta", "xlm-roberta", "camembert", "xlm-roberta-xl"}
# tokenizers that know no limit report a huge sentinel as their maximum length
_NO_LIMIT = 10**6


def local_path(model: str | Path) -> Path:
    """The model as a path, ``~`` expanded; ``~name`` of an unknown user is taken literally."""
    try:
        return Path(model).expanduser()
    except RuntimeError:  # no such user: not a folder of ours, perhaps a hub id
        return Path(model)


def resolve_model_dir(model: str | Path) -> Path:
    """A local folder as it is; anything else is a hub id, fetched (or read from the cache)."""
    path = local_path(model)
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(f"model path {str(model)!r} is a file, not a model folder")
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                repo_id=str(model),
                ignore_patterns=["flax_model.msgpack", "rust_model.ot", "tf_model.h5", "onnx/*"],
            )
        )
    except Exception as error:
        raise ModelLoadError(
            f"model {str(model)!r} is neither a local folder nor a hub id that could be fetched: "
            f"{error}"
        ) from error


def has_m3_heads(folder: Path, name: str) -> bool:
    """Whether the folder is BGE-M3-style; a BGE-M3 copy missing its heads is an error."""
    present = [(folder / head).is_file() for head in M3_HEAD_FILES]
    if all(present):
        return True
    if any(present) or "bge-m3" in name.lower():
        missing = [head for head, found in zip(M3_HEAD_FILES, present, strict=True) if not found]
        raise ModelLoadError(
            f"model {name!r} looks like BGE-M3 but {folder} lacks {', '.join(missing)}; "
            "without them the sparse and ColBERT heads would be random"
        )
    return False


@dataclass(frozen=True)
class SentenceTransformerHints:
    """What a sentence-transformers folder says about pooling, normalising and length."""

    pooling: str | None = None
    normalize: bool | None = None
    max_length: int | None = None

    @classmethod
    def read(cls, folder: Path) -> SentenceTransformerHints:
        modules = _read_json(folder / "modules.json")
        if not isinstance(modules, list):
            return cls()
        pooling, normalize = None, False
        for module in modules:
            kind = str(module.get("type", ""))
            if kind.endswith("Normalize"):
                normalize = True
            if kind.endswith("Pooling"):
                pooling = _pooling_from(_read_json(folder / module.get("path", "") / "config.json"))
        config = _read_json(folder / "sentence_bert_config.json") or {}
        max_length = config.get("max_seq_length")
        return cls(pooling=pooling, normalize=normalize, max_length=max_length)


def _pooling_from(config: Any) -> str | None:
    if not isinstance(config, dict):
        return None
    mode = config.get("pooling_mode")
    if isinstance(mode, str):
        return {"lasttoken": "last_token"}.get(mode, mode)
    for key, method in (
        ("pooling_mode_cls_token", "cls"),
        ("pooling_mode_mean_tokens", "mean"),
        ("pooling_mode_lasttoken", "last_token"),
    ):
        if config.get(key):
            return method
    return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot read {path}: {error}") from error


def usable_max_length(tokenizer: Any, config: Any) -> int:
    """The longest input (special tokens included) the model's position table allows."""
    positions = int(getattr(config, "max_position_embeddings", _NO_LIMIT))
    if getattr(config, "model_type", "") in _POSITION_OFFSET_TYPES:
        positions -= int(getattr(config, "pad_token_id", 1) or 0) + 1
    declared = int(getattr(tokenizer, "model_max_length", _NO_LIMIT) or _NO_LIMIT)
    return min(positions, declared) if declared < _NO_LIMIT else positions
