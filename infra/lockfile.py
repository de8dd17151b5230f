"""Reading the lock (requirements/*.txt, written by `make lock` with uv).

Each entry is ``name==version [; marker]``, its ``--hash`` lines, then uv's ``# via``
annotation naming who needs it: another locked package, ``embedq (pyproject.toml)`` for
a direct requirement, or the torch pin. Only the standard library and ``packaging``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCK_DEV = REPO / "requirements" / "dev.txt"
LOCK_RUNTIME = REPO / "requirements" / "runtime.txt"
TORCH_PIN = REPO / "requirements" / "torch.txt"
# how uv names a requirement that comes from pyproject.toml itself
FROM_PYPROJECT = "embedq (pyproject.toml)"

_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)\s*(;(?P<marker>[^\\]+))?"
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HASH = re.compile(r"--hash=(?P<hash>sha256:[0-9a-f]{64})")


@dataclass(frozen=True)
class Pin:
    """One locked package: name (canonical), version, where it applies, hashes, who needs it."""

    name: str
    version: str
    marker: str | None
    hashes: tuple[str, ...]
    via: tuple[str, ...]

    def applies(self, environment: Mapping[str, str]) -> bool:
        return self.marker is None or Marker(self.marker).evaluate(dict(environment))

    def requirement_line(self) -> str:
        """The entry as pip reads it: pinned, with every hash."""
        marker = f" ; {self.marker}" if self.marker else ""
        hashes = "".join(f" \\\n    --hash={digest}" for digest in self.hashes)
        return f"{self.name}=={self.version}{marker}{hashes}"


def read_lock(path: Path) -> list[Pin]:
    """Every entry of a lock file, in file order."""
    pins: list[Pin] = []
    for block in _entries(path.read_text(encoding="utf-8").splitlines()):
        match = _PIN.match(block[0])
        if match is None:
            raise ValueError(f"{path}: not a pinned requirement: {block[0]!r}")
        marker = match.group("marker")
        pins.append(
            Pin(
                name=canonicalize_name(match.group("name")),
                version=match.group("version"),
                marker=marker.strip() if marker else None,
                hashes=tuple(m.group("hash") for line in block for m in _HASH.finditer(line)),
                via=_via(block),
            )
        )
    return pins


def locked_torch() -> str:
    """The torch version requirements/torch.txt pins."""
    for line in TORCH_PIN.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line.strip())
        if match and canonicalize_name(match.group("name")) == "torch":
            return match.group("version")
    raise ValueError(f"{TORCH_PIN} pins no torch version")


def needs(pins: Iterable[Pin]) -> dict[str, set[str]]:
    """Who needs whom: package -> the locked packages it requires (from the via lines)."""
    graph: dict[str, set[str]] = {}
    for pin in pins:
        for parent in pin.via:
            graph.setdefault(node(parent), set()).add(pin.name)
    return graph


def node(via: str) -> str:
    """A via entry as a graph node: a package's canonical name, else the text itself."""
    return canonicalize_name(via) if _NAME.fullmatch(via) else via


def closure(roots: Iterable[str], graph: Mapping[str, set[str]]) -> set[str]:
    """``roots`` and everything they need, transitively."""
    seen: set[str] = set()
    todo = [node(root) for root in roots]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    return seen


def _entries(lines: list[str]) -> list[list[str]]:
    """Lines grouped per entry: each starts at column 0 and holds the indented lines after it
    (a comment at column 0, such as uv's closing list of excluded packages, ends it)."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in lines:
        if line.startswith("#"):
            current = None
        elif line and not line[0].isspace():
            current = [line]
            blocks.append(current)
        elif current is not None and line.strip():
            current.append(line)
    return blocks


def _via(block: list[str]) -> tuple[str, ...]:
    """uv writes ``# via X`` for one, or ``# via`` then ``#   X`` per line for several."""
    names: list[str] = []
    inside = False
    for line in block[1:]:
        text = line.strip()
        if text.startswith("# via"):
            inside = True
            rest = text[len("# via") :].strip()
            if rest:
                names.append(rest)
        elif inside and text.startswith("#"):
            names.append(text.lstrip("#").strip())
    return tuple(names)
