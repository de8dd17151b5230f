"""Memory budgets and the cost model that sizes micro-batches to fit them.

A forward pass of an encoder over a padded batch of ``batch`` sequences of
``length`` tokens needs activation memory that grows linearly with the number
of tokens (hidden states, feed-forward intermediates) plus a quadratic term
from attention scores. The cost model predicts that peak as

    peak(batch, length) = scale * batch * length * (per_token + per_token_pair * length)

The coefficients start from the architecture (an analytic estimate), are
refitted from measured peaks when a GPU is calibrated, and ``scale`` only ever
grows when a real out-of-memory error shows the prediction was too low.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from embedq.errors import InvalidSettingError

logger = logging.getLogger(__name__)

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

# Headroom kept when an out-of-memory error moves the model: the failed shape
# must be predicted to exceed the budget by this much, so it is never packed again.
OOM_MARGIN = 1.05


def parse_bytes(value: int | float | str) -> int:
    """Turn ``"8GiB"``, ``"512 MB"``, ``2**30`` or ``"1e9"``-free strings into bytes."""
    if isinstance(value, bool):
        raise InvalidSettingError(f"memory size must be a number or a string, not {value!r}")
    if isinstance(value, int | float):
        size = float(value)
    else:
        match = _SIZE.match(str(value))
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise InvalidSettingError(
                f"cannot read memory size {value!r}: use a number of bytes or e.g. '8GiB', '512MB'"
            )
        size = float(match.group(1)) * _UNITS[unit]
    if not math.isfinite(size) or size <= 0:
        raise InvalidSettingError(f"memory size must be positive, got {value!r}")
    return int(size)


def format_bytes(size: float) -> str:
    """Human-readable binary size, e.g. ``8.00 GiB``."""
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(size) >= factor:
            return f"{size / factor:.2f} {unit}"
    return f"{int(size)} B"


@dataclass(frozen=True)
class ArchitectureShape:
    """The few numbers of a transformer encoder that decide its activation memory."""

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    dtype_bytes: int

    @classmethod
    def from_config(cls, config: object, *, dtype_bytes: int) -> ArchitectureShape:
        hidden = int(getattr(config, "hidden_size", 768))
        return cls(
            hidden_size=hidden,
            intermediate_size=int(getattr(config, "intermediate_size", 4 * hidden)),
            num_attention_heads=int(getattr(config, "num_attention_heads", 12)),
            dtype_bytes=dtype_bytes,
        )


@dataclass
class CostModel:
    """Predicts the peak activation bytes of one forward pass over a padded batch."""

    per_token: float
    per_token_pair: float
    scale: float = 1.0
    oom_events: int = 0

    @classmethod
    def from_architecture(cls, shape: ArchitectureShape, *, extra_per_token: int = 0) -> CostModel:
        """A deliberately generous analytic prior.

        Per token, one layer holds its input, Q, K, V, the attention context and
        the output (about six hidden-size vectors) plus the feed-forward
        intermediate before and after its activation; per token pair, the
        attention scores and their softmax for every head (eager attention; fused
        kernels need far less, which calibration discovers). ``extra_per_token``
        covers output heads and the copies made when results leave the device.
        """
        per_token = shape.dtype_bytes * (6 * shape.hidden_size + 2 * shape.intermediate_size)
        per_pair = shape.dtype_bytes * 2 * shape.num_attention_heads
        return cls(per_token=float(per_token + extra_per_token), per_token_pair=float(per_pair))

    def predict(self, batch: int, length: int) -> float:
        tokens = batch * length
        return self.scale * tokens * (self.per_token + self.per_token_pair * length)

    def max_batch(self, length: int, budget: float) -> int:
        """The largest batch of sequences padded to ``length`` predicted to fit ``budget``."""
        per_sequence = self.predict(1, length)
        return int(budget // per_sequence) if per_sequence > 0 else 0

    def learn_from_oom(self, batch: int, length: int, budget: float) -> None:
        """A batch of this shape ran out of memory: never predict it fits again."""
        self.oom_events += 1
        predicted = self.predict(batch, length)
        wanted = budget * OOM_MARGIN
        if predicted < wanted:
            self.scale *= wanted / max(predicted, 1.0)
        logger.info(
            "out of memory at batch %d x %d tokens (predicted %s of %s): cost scale now %.3f",
            batch,
            length,
            format_bytes(predicted),
            format_bytes(budget),
            self.scale,
        )

    def fit(self, samples: Sequence[tuple[int, int, float]], *, safety: float = 1.1) -> None:
        """Refit the coefficients to measured ``(batch, length, peak_bytes)`` samples.

        Least squares on ``peak / tokens = per_token + per_token_pair * length``,
        with both coefficients kept non-negative, then inflated by ``safety``.
        """
        if not samples:
            raise ValueError("cannot fit a cost model to no measurements")
        xs = [float(length) for _, length, _ in samples]
        ys = [peak / (batch * length) for batch, length, peak in samples]
        slope, intercept = _least_squares_line(xs, ys)
        if slope < 0:
            slope, intercept = 0.0, max(ys)
        if intercept < 0:
            intercept = 0.0
            slope = max(y / x for x, y in zip(xs, ys, strict=True))
        self.per_token = intercept * safety
        self.per_token_pair = slope * safety
        self.scale = 1.0


def _least_squares_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Slope and intercept of the least-squares line; a flat line through the mean if xs agree."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0, mean_y
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    return slope, mean_y - slope * mean_x
