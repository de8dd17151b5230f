"""What a model will produce, learnt from its configuration without loading its weights.

A producer shapes the Qdrant collection when it creates a job, long before a
worker loads the model, so it needs the output dimensions cheaply: the
configuration file and the presence of BGE-M3's head files are enough.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedq.errors import InvalidSettingError, ModelLoadError, UnsupportedOutputError
from embedq.models.loading import M3_HEAD_FILES, local_path
from embedq.models.outputs import OUTPUTS


@dataclass(frozen=True)
class ModelDescription:
    """The outputs a model offers, and their sizes."""

    name: str
    dense_dim: int
    offers: frozenset[str]

    @property
    def colbert_dim(self) -> int:
        # BGE-M3's ColBERT head maps the hidden size to itself
        return self.dense_dim

    def choose(self, outputs: str | Sequence[str] | None) -> frozenset[str]:
        """The outputs asked for (default: dense + sparse for BGE-M3, dense else), checked."""
        if outputs is None:
            return (
                frozenset(("dense", "sparse")) if "sparse" in self.offers else frozenset(["dense"])
            )
        asked = [o.strip() for o in outputs.split(",")] if isinstance(outputs, str) else outputs
        unknown = sorted(set(asked) - set(OUTPUTS))
        if unknown or not asked:
            raise InvalidSettingError(f"outputs must be among {OUTPUTS}, got {list(asked)}")
        missing = sorted(set(asked) - self.offers)
        if missing:
            raise UnsupportedOutputError(
                f"model {self.name!r} offers {sorted(self.offers)}, not {missing}: sparse and "
                "ColBERT need a BGE-M3-style model with colbert_linear.pt and sparse_linear.pt"
            )
        return frozenset(asked)


def describe_model(model: str | Path) -> ModelDescription:
    """Read a local folder, or only the small files of a hub model."""
    files, config = _read_config(model)
    m3 = all(head in files for head in M3_HEAD_FILES)
    offers = frozenset(OUTPUTS if m3 else ("dense",))
    return ModelDescription(name=str(model), dense_dim=int(config.hidden_size), offers=offers)


def check_reranker(model: str | Path) -> None:
    """Refuse a model that is not a cross-encoder with one relevance logit, from its config."""
    _, config = _read_config(model)
    architectures = list(getattr(config, "architectures", None) or [])
    classifier = any(name.endswith("ForSequenceClassification") for name in architectures)
    if not classifier or config.num_labels != 1:
        raise ModelLoadError(
            f"model {str(model)!r} is not a reranker: a cross-encoder (…ForSequenceClassification "
            f"with one label) is needed, its config names {architectures or 'no architecture'} "
            f"with {config.num_labels} label(s)"
        )


def _read_config(model: str | Path) -> tuple[set[str], Any]:
    """The model's file names and its transformers configuration."""
    folder = local_path(model)
    if _is_dir(folder):
        files = {path.name for path in folder.iterdir()}
        config_path = folder / "config.json"
    else:
        files, config_path = _hub_files(str(model))
    if not config_path.is_file():
        raise ModelLoadError(f"model {str(model)!r} has no config.json")
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(config_path.parent))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"model {str(model)!r} has an unreadable config: {error}") from error
    return files, config


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long for a path, say: then it is no folder
        return False


def _hub_files(repo_id: str) -> tuple[set[str], Path]:
    try:
        from huggingface_hub import HfApi, hf_hub_download

        files = set(HfApi().list_repo_files(repo_id))
        return files, Path(hf_hub_download(repo_id, "config.json"))
    except Exception as error:
        raise ModelLoadError(
            f"model {repo_id!r} is neither a local folder nor a hub id that could be read: {error}"
        ) from error
