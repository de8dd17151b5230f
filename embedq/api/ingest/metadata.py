"""Limits on a document's metadata, checked when a document is taken in (file or HTTP).

Metadata goes to the ledger as JSON and to Qdrant as a payload. What passes these
checks encodes in both: no integer past 64 bits, no NaN, no lone surrogate, no
nesting that would exhaust an encoder's stack. A document that fails one is
rejected alone, with the field and the limit named.
"""

from __future__ import annotations

import json
import math
import re

MAX_DEPTH = 32
"""Levels of objects and lists, the metadata object itself being the first."""

MAX_BYTES = 64 * 2**10
"""Size of the metadata as compact UTF-8 JSON."""

MAX_KEYS = 1024
"""Keys of all its objects together, nested ones included."""

MIN_INT = -(2**63)
"""Smallest integer: Qdrant's payload integers are signed 64-bit."""

MAX_INT = 2**63 - 1
"""Largest integer."""

# UTF-8 cannot encode a UTF-16 surrogate, which JSON's "\ud800" escapes can still produce.
_SURROGATE = re.compile("[\ud800-\udfff]")

# Integers past this many bits are described by their size: printing one is slow, or refused.
_SHOWN_INT_BITS = 128
_SHOWN_KEY_CHARS = 40


def metadata_problem(value: object) -> str | None:
    """What makes ``value``, a document's metadata, unfit to store; None when it is fit.

    The shape is measured without recursion first, so the walk that follows is at
    most ``MAX_DEPTH`` calls deep and at most ``MAX_BYTES`` values long.
    """
    depth, keys, values = _shape(value)
    if depth > MAX_DEPTH:
        return f"metadata is nested {depth} levels deep, more than the {MAX_DEPTH} allowed"
    if values > MAX_BYTES:  # every value takes a byte of JSON at least
        return f"metadata holds over {MAX_BYTES:,} values, more than {MAX_BYTES:,} bytes allow"
    if keys > MAX_KEYS:
        return f"metadata has {keys:,} keys in all, more than the {MAX_KEYS:,} allowed"
    problem = _value_problem(value, "metadata")
    if problem is not None:
        return problem
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_BYTES:
        return f"metadata is {size:,} bytes as JSON, more than the {MAX_BYTES:,} allowed"
    return None


def lone_surrogate(text: str) -> int | None:
    """Where the first lone UTF-16 surrogate in ``text`` is; None when it is valid Unicode."""
    found = _SURROGATE.search(text)
    return None if found is None else found.start()


def _shape(value: object) -> tuple[int, int, int]:
    """(deepest nesting, keys, values) of ``value``; stops counting past ``MAX_BYTES`` values."""
    depth, keys, values = 0, 0, 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack and values <= MAX_BYTES:
        item, level = stack.pop()
        values += 1
        if isinstance(item, dict):
            keys += len(item)
            children: list[object] | tuple[object, ...] = tuple(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth = max(depth, level)
        stack.extend((child, level + 1) for child in children)
    return depth, keys, values


def _value_problem(value: object, path: str) -> str | None:
    if isinstance(value, dict):
        return _object_problem(value, path)
    if isinstance(value, list):
        for index, item in enumerate(value):
            problem = _value_problem(item, f"{path}[{index}]")
            if problem is not None:
                return problem
        return None
    return _scalar_problem(value, path)


def _object_problem(value: dict[object, object], path: str) -> str | None:
    for key, item in value.items():
        if not isinstance(key, str):
            return f"{path}: key {key!r} is not a string"
        at = lone_surrogate(key)
        if at is not None:
            return f"{path}: key {key!a} holds a lone surrogate at character {at}, not Unicode"
        problem = _value_problem(item, f"{path}.{_shown_key(key)}")
        if problem is not None:
            return problem
    return None


def _scalar_problem(value: object, path: str) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        if MIN_INT <= value <= MAX_INT:
            return None
        return f"{path}: integer {_shown_int(value)} is outside the signed 64-bit range"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path}: {value} is not a finite number"
    if isinstance(value, str):
        at = lone_surrogate(value)
        if at is None:
            return None
        return f"{path}: the string holds a lone surrogate at character {at}, not Unicode"
    return f"{path}: a {type(value).__name__} is not a JSON value"


def _shown_int(value: int) -> str:
    bits = value.bit_length()
    return str(value) if bits <= _SHOWN_INT_BITS else f"of {bits:,} bits"


def _shown_key(key: str) -> str:
    # a reason is stored as text: no control characters, and not a whole long key
    shown = key if key.isprintable() else ascii(key)[1:-1]
    if len(shown) <= _SHOWN_KEY_CHARS:
        return shown
    return shown[:_SHOWN_KEY_CHARS] + "..."
