"""Tokenising once, cutting long texts into windows, and adding special tokens to ids.

Everything downstream works on token ids: texts are tokenised a single time
(without special tokens), long ones are cut into overlapping windows, and each
window gets the model's special tokens from a template learnt from the tokenizer
itself, so no text is ever decoded and tokenised again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

LongText = Literal["chunk", "truncate"]
_PROBE_FIRST, _PROBE_SECOND = "hello", "world"


@dataclass(frozen=True)
class SpecialTokens:
    """Where a tokenizer puts its special tokens around one sequence or a pair.

    Learnt by tokenising two probe words with and without special tokens, which
    works for every tokenizer (BERT's ``[CLS] a [SEP] b [SEP]``, XLM-R's
    ``<s> a </s></s> b </s>``) without relying on per-class helper methods.
    """

    single_prefix: tuple[int, ...]
    single_suffix: tuple[int, ...]
    pair_prefix: tuple[int, ...]
    pair_middle: tuple[int, ...]
    pair_suffix: tuple[int, ...]
    # token type id of the second segment and everything after it (0 for XLM-R, 1 for BERT)
    second_type_id: int

    @classmethod
    def learn(cls, tokenizer: Any) -> SpecialTokens:
        first = _content_ids(tokenizer, _PROBE_FIRST)
        second = _content_ids(tokenizer, _PROBE_SECOND)
        single = tokenizer(_PROBE_FIRST)["input_ids"]
        prefix, suffix = _split_around(single, first)
        pair_encoding = tokenizer(_PROBE_FIRST, _PROBE_SECOND)
        pair = pair_encoding["input_ids"]
        pair_prefix, rest = _split_around(pair, first)
        middle, pair_suffix = _split_around(rest, second)
        type_ids = pair_encoding.get("token_type_ids") or [0] * len(pair)
        return cls(
            single_prefix=tuple(prefix),
            single_suffix=tuple(suffix),
            pair_prefix=tuple(pair_prefix),
            pair_middle=tuple(middle),
            pair_suffix=tuple(pair_suffix),
            second_type_id=int(type_ids[-1]),
        )

    @property
    def single_count(self) -> int:
        return len(self.single_prefix) + len(self.single_suffix)

    @property
    def pair_count(self) -> int:
        return len(self.pair_prefix) + len(self.pair_middle) + len(self.pair_suffix)

    def wrap(self, ids: Sequence[int]) -> list[int]:
        return [*self.single_prefix, *ids, *self.single_suffix]

    def wrap_pair(self, first: Sequence[int], second: Sequence[int]) -> tuple[list[int], list[int]]:
        """Input ids and token type ids of a (query, passage) pair."""
        head = [*self.pair_prefix, *first, *self.pair_middle]
        tail = [*second, *self.pair_suffix]
        return head + tail, [0] * len(head) + [self.second_type_id] * len(tail)


def _content_ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _split_around(ids: Sequence[int], part: Sequence[int]) -> tuple[list[int], list[int]]:
    """What comes before and after the first occurrence of ``part`` in ``ids``."""
    ids, part = list(ids), list(part)
    for start in range(len(ids) - len(part) + 1):
        if ids[start : start + len(part)] == part:
            return ids[:start], ids[start + len(part) :]
    raise ValueError(f"tokenizer output {ids} does not contain the probe's tokens {part}")


@dataclass(frozen=True)
class Window:
    """One model input: a slice of one text's tokens, with its special tokens."""

    text_index: int
    chunk_index: int
    input_ids: list[int]
    # character span of the window in its text; None when the tokenizer gives no offsets
    start: int | None
    end: int | None

    @property
    def length(self) -> int:
        return len(self.input_ids)


def window_starts(num_tokens: int, width: int, overlap: int) -> list[int]:
    """Start positions of windows of ``width`` tokens overlapping by ``overlap``.

    The last window ends exactly at the last token, so no window is a sliver.
    """
    if num_tokens <= width:
        return [0]
    step = width - overlap
    starts = list(range(0, num_tokens - width, step))
    starts.append(num_tokens - width)
    return starts


def tokenize(tokenizer: Any, texts: Sequence[str], *, truncate_to: int | None) -> Any:
    """One batched tokenizer call, without special tokens, with character offsets."""
    return tokenizer(
        list(texts),
        add_special_tokens=False,
        truncation=truncate_to is not None,
        max_length=truncate_to,
        return_offsets_mapping=bool(getattr(tokenizer, "is_fast", False)),
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )


def make_windows(
    text_index: int,
    ids: Sequence[int],
    offsets: Sequence[tuple[int, int]] | None,
    *,
    special: SpecialTokens,
    width: int,
    overlap: int,
) -> list[Window]:
    """Cut one tokenised text into windows of at most ``width`` content tokens."""
    windows = []
    for chunk_index, start in enumerate(window_starts(len(ids), width, overlap)):
        end = min(start + width, len(ids))
        span = (offsets[start][0], offsets[end - 1][1]) if offsets else (None, None)
        windows.append(
            Window(
                text_index=text_index,
                chunk_index=chunk_index,
                input_ids=special.wrap(ids[start:end]),
                start=span[0],
                end=span[1],
            )
        )
    return windows
