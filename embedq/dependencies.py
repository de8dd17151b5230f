"""Whether the packages embedq runs on are installed, at versions it supports.

A dependency that is missing, or at a release embedq was never tested with, otherwise
fails deep inside another package: transformers 5.24 removed a module FlagEmbedding
imports, and every model load ended in a 30-line traceback from FlagEmbedding. Here each
such problem is one line: which package, which version is installed, which versions work,
and how to fix it. The supported ranges are embedq's own declared requirements, read from
its installed metadata (or, in a source checkout that was never installed, pyproject.toml).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from types import ModuleType

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from embedq.errors import EmbedqError

# What the model runtime (embedq.models) imports: checked before FlagEmbedding is imported
MODEL_RUNTIME = ("torch", "transformers", "FlagEmbedding", "numpy", "huggingface-hub")
FIX_FROM_LOCK = "or reinstall embedq from its lock (make install)"


class DependencyError(EmbedqError):
    """A package embedq needs is missing, at an unsupported version, or cannot be imported.

    ``problems`` holds one line per package; ``str()`` joins them.
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def check(names: Iterable[str] | None = None) -> None:
    """Raise :class:`DependencyError` if any of ``names`` (default: every runtime
    requirement of embedq) is missing or outside its supported range."""
    declared = declared_requirements()
    wanted = declared.values() if names is None else (declared[_key(n)] for n in names)
    problems = [line for line in map(problem_with, wanted) if line]
    if problems:
        raise DependencyError(problems)


def import_checked(module: str, *, package: str) -> ModuleType:
    """``import module`` once the model runtime's packages are known good; an import
    that still fails is one line naming ``package``, not the traceback from inside it."""
    check(MODEL_RUNTIME)
    try:
        return importlib.import_module(module)
    except Exception as error:  # an ImportError, or whatever a broken package raises
        raise DependencyError([cannot_import(package, error)]) from error


def exit_if_unsupported(names: Iterable[str] | None = None, *, prog: str = "embedq") -> None:
    """For a command's first line: print each problem on a line of its own and exit 2."""
    try:
        check(names)
    except DependencyError as error:
        for line in error.problems:
            print(f"{prog}: {line}", file=sys.stderr)
        raise SystemExit(2) from None


def problem_with(requirement: Requirement) -> str | None:
    """One line saying what is wrong with ``requirement`` here, or None if nothing is."""
    wanted = f"{requirement.name}{requirement.specifier}"
    installed = installed_version(requirement.name)
    if installed is None:
        return (
            f"{requirement.name} is not installed; embedq needs {wanted}. "
            f'Fix: pip install "{wanted}", {FIX_FROM_LOCK}'
        )
    try:
        supported = requirement.specifier.contains(Version(installed), prereleases=True)
    except InvalidVersion:
        supported = False
    if supported:
        return None
    return (
        f"{requirement.name} {installed} is installed, but embedq supports {wanted}. "
        f'Fix: pip install "{wanted}", {FIX_FROM_LOCK}'
    )


def cannot_import(package: str, error: BaseException) -> str:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    installed = installed_version(package) or "?"
    return (
        f"{package} {installed} is installed but cannot be imported ({reason}). "
        f"Fix: {FIX_FROM_LOCK}; its versions of {package} and transformers work together"
    )


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@cache
def declared_requirements() -> dict[str, Requirement]:
    """embedq's runtime requirements that apply here, by canonical name."""
    requirements = {}
    for line in _requirement_lines():
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            requirements[_key(requirement.name)] = requirement
    return requirements


def _requirement_lines() -> list[str]:
    # a source checkout: its pyproject.toml is the truth, installed or not
    checkout = _pyproject_dependencies(Path(__file__).resolve().parents[1] / "pyproject.toml")
    return checkout if checkout is not None else importlib.metadata.requires("embedq") or []


def _pyproject_dependencies(path: Path) -> list[str] | None:
    """embedq's dependencies from ``path``; None unless it is embedq's own pyproject.toml
    (beside an installed package there is none, or another package's stray one)."""
    if not path.is_file():
        return None
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    with path.open("rb") as file:
        project = tomllib.load(file).get("project", {})
    return list(project.get("dependencies", [])) if project.get("name") == "embedq" else None


def _key(name: str) -> str:
    return canonicalize_name(name)
