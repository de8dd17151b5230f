"""What a job may ask of an embedder: the per-call settings a registry builds a view for.

A spec is a value: frozen and hashable, so a registry keeps one view per model
and spec, and every spec of a model shares that model's weights. It is checked
on its own here; whether the model offers the outputs or allows the length is
checked when a view is built.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import get_args

from embedq.errors import InvalidSettingError
from embedq.models.outputs import OUTPUTS
from embedq.models.tokens import LongText

LONG_TEXT_CHOICES: tuple[str, ...] = get_args(LongText)


@dataclass(frozen=True)
class EmbedderSpec:
    """Maximum length, long-text handling and outputs of one embedder view.

    ``None`` means the model's own choice: its maximum length, or its default
    outputs (dense + sparse for BGE-M3, dense else). ``outputs`` may be given as
    any collection of names or a comma-separated string; it is kept as a frozenset.
    """

    max_length: int | None = None
    long_text: LongText = "chunk"
    outputs: frozenset[str] | None = None

    def __post_init__(self) -> None:
        _check_max_length(self.max_length)
        if self.long_text not in LONG_TEXT_CHOICES:
            raise InvalidSettingError(
                f"long_text must be one of {LONG_TEXT_CHOICES}, got {self.long_text!r}"
            )
        if self.outputs is not None:
            # frozen: normalising a list or a string to a frozenset keeps the spec hashable
            object.__setattr__(self, "outputs", _output_set(self.outputs))


def _check_max_length(max_length: object) -> None:
    if max_length is None:
        return
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise InvalidSettingError(f"max_length must be a whole number >= 1, got {max_length!r}")


def _output_set(outputs: Iterable[str] | str) -> frozenset[str]:
    names = [name.strip() for name in outputs.split(",")] if isinstance(outputs, str) else outputs
    chosen = frozenset(names)
    if not chosen or not chosen <= set(OUTPUTS):
        raise InvalidSettingError(f"outputs must be among {OUTPUTS}, got {sorted(chosen)}")
    return chosen
