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


@dataclass(frozen=True)
class TokenizedText:
    """One text's content tokens, their character spans, and which tokens begin a word."""

    ids: list[int]
    offsets: list[tuple[int, int]] | None
    word_starts: list[bool] | None

    def starts_word(self, position: int) -> bool:
        if position <= 0 or position >= len(self.ids):
            return True
        return self.word_starts is None or self.word_starts[position]


def tokenize(
    tokenizer: Any, texts: Sequence[str], *, truncate_to: int | None
) -> list[TokenizedText]:
    """One batched tokenizer call, without special tokens, with character offsets."""
    fast = bool(getattr(tokenizer, "is_fast", False))
    encoded = tokenizer(
        list(texts),
        add_special_tokens=False,
        truncation=truncate_to is not None,
        max_length=truncate_to,
        return_offsets_mapping=fast,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )
    return [
        TokenizedText(
            ids=list(ids),
            offsets=encoded["offset_mapping"][row] if fast else None,
            word_starts=_word_starts(encoded.word_ids(row)) if fast else None,
        )
        for row, ids in enumerate(encoded["input_ids"])
    ]


def _word_starts(word_ids: Sequence[int | None]) -> list[bool]:
    return [i == 0 or word != word_ids[i - 1] or word is None for i, word in enumerate(word_ids)]


def window_spans(text: TokenizedText, width: int, overlap: int) -> list[tuple[int, int]]:
    """Token ranges of windows of at most ``width`` tokens, overlapping by about ``overlap``.

    Windows begin and end on word boundaries, so no word is cut in two and each
    chunk's text tokenises back to the same tokens. Only a word too long to
    find a boundary near the cut (a URL, a run of symbols) is cut inside.
    """
    count = len(text.ids)
    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        end = min(start + width, count)
        # never give up more than half a window to reach a boundary
        end = _word_boundary_near(text, end, floor=max(start + 1, end - width // 2))
        spans.append((start, end))
        if end >= count:
            return spans
        target = max(end - overlap, start + 1)
        start = _word_boundary_near(text, target, floor=max(start + 1, target - width // 4))


def _word_boundary_near(text: TokenizedText, position: int, *, floor: int) -> int:
    """The last word start in ``[floor, position]``; ``position`` itself if there is none."""
    for candidate in range(position, floor - 1, -1):
        if text.starts_word(candidate):
            return candidate
    return position


def make_windows(
    text_index: int,
    text: TokenizedText,
    *,
    special: SpecialTokens,
    width: int,
    overlap: int,
) -> list[Window]:
    """Cut one tokenised text into windows of at most ``width`` content tokens."""
    windows = []
    for chunk_index, (start, end) in enumerate(window_spans(text, width, overlap)):
        offsets = text.offsets
        windows.append(
            Window(
                text_index=text_index,
                chunk_index=chunk_index,
                input_ids=special.wrap(text.ids[start:end]),
                start=offsets[start][0] if offsets else None,
                end=offsets[end - 1][1] if offsets else None,
            )
        )
    return windows
