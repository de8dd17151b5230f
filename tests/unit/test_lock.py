"""pyproject.toml and the lock agree: every dependency is locked, within its range, and the
lock holds nothing that nothing asks for. `make lock` mends any failure here."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]


def load_lockfile() -> ModuleType:
    """infra/lockfile.py, which `make wheelhouse` and `make kit` read the lock with."""
    spec = importlib.util.spec_from_file_location("lockfile", REPO / "infra" / "lockfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lockfile"] = module
    spec.loader.exec_module(module)
    return module


lockfile = load_lockfile()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
RUNTIME = [Requirement(line) for line in PYPROJECT["project"]["dependencies"]]
EXTRAS = [
    Requirement(line)
    for extra in PYPROJECT["project"]["optional-dependencies"].values()
    for line in extra
]
LOCKS = {
    "runtime": (lockfile.LOCK_RUNTIME, RUNTIME),
    "dev": (lockfile.LOCK_DEV, RUNTIME + EXTRAS),
}


def declared(requirements: list[Requirement]) -> dict[str, list[Requirement]]:
    by_name: dict[str, list[Requirement]] = {}
    for requirement in requirements:
        by_name.setdefault(canonicalize_name(requirement.name), []).append(requirement)
    return by_name


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_declared_dependency_is_locked_within_its_range(lock):
    path, requirements = LOCKS[lock]
    pins: dict[str, list] = {}
    for pin in lockfile.read_lock(path):
        pins.setdefault(pin.name, []).append(pin)
    problems = []
    for name, wanted in declared(requirements).items():
        if name == "torch":
            continue  # installed on its own, checked below
        if name not in pins:
            problems.append(f"{name} is in pyproject.toml but not in {path.name}")
            continue
        for requirement in wanted:
            for pin in pins[name]:
                if not requirement.specifier.contains(Version(pin.version), prereleases=True):
                    problems.append(f"{path.name} locks {name}=={pin.version}: not {requirement}")
    assert not problems, "run `make lock`:\n" + "\n".join(problems)


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_lock_holds_only_what_something_asks_for(lock):
    path, requirements = LOCKS[lock]
    pins = lockfile.read_lock(path)
    locked = {pin.name for pin in pins}
    wanted = set(declared(requirements))
    problems = []
    for pin in pins:
        parents = [lockfile.node(via) for via in pin.via if not via.startswith("-c ")]
        if lockfile.FROM_PYPROJECT in parents and pin.name not in wanted:
            problems.append(
                f"{pin.name} is locked as a dependency of embedq, which no longer has it"
            )
        if not any(p == lockfile.FROM_PYPROJECT or p in locked or p == "torch" for p in parents):
            problems.append(f"{pin.name} is locked, but nothing locked needs it")
    assert not problems, "run `make lock`:\n" + "\n".join(problems)


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_pin_has_hashes_and_torch_is_left_out(lock):
    pins = lockfile.read_lock(LOCKS[lock][0])
    assert pins
    assert [pin.name for pin in pins if not pin.hashes] == []
    names = {pin.name for pin in pins}
    assert "torch" not in names
    # torch's CUDA runtime never enters the lock: a CPU machine must not pull gigabytes
    assert not [name for name in names if name.startswith(("nvidia-", "cuda-", "triton"))]


def test_runtime_lock_agrees_with_the_dev_lock():
    dev = {(pin.name, pin.marker): pin.version for pin in lockfile.read_lock(lockfile.LOCK_DEV)}
    runtime = lockfile.read_lock(lockfile.LOCK_RUNTIME)
    differ = [pin.name for pin in runtime if dev.get((pin.name, pin.marker)) != pin.version]
    assert differ == []


def test_torch_pin_fits_the_range_and_the_metadata_the_lock_was_resolved_with():
    version = lockfile.locked_torch()
    (torch_range,) = declared(RUNTIME)["torch"]
    assert torch_range.specifier.contains(version)
    (metadata,) = PYPROJECT["tool"]["uv"]["dependency-metadata"]
    assert (metadata["name"], metadata["version"]) == ("torch", version)


def test_transformers_stays_below_the_release_that_broke_flagembedding():
    (transformers,) = declared(RUNTIME)["transformers"]
    assert not transformers.specifier.contains("5.24.0")


def test_the_reader_parses_uv_entries_and_their_via_lines(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text(
        "# header\n"
        "alpha==1.0 ; python_full_version < '3.11' \\\n"
        "    --hash=sha256:" + "a" * 64 + " \\\n"
        "    --hash=sha256:" + "b" * 64 + "\n"
        "    # via\n"
        "    #   beta\n"
        "    #   embedq (pyproject.toml)\n"
        "beta==2.0 \\\n"
        "    --hash=sha256:" + "c" * 64 + "\n"
        "    # via embedq (pyproject.toml)\n"
        "\n"
        "# The following packages were excluded from the output:\n"
        "# torch\n"
    )
    alpha, beta = lockfile.read_lock(lock)
    assert (alpha.name, alpha.version, alpha.marker) == (
        "alpha",
        "1.0",
        "python_full_version < '3.11'",
    )
    assert alpha.hashes == ("sha256:" + "a" * 64, "sha256:" + "b" * 64)
    assert alpha.via == ("beta", "embedq (pyproject.toml)")
    assert beta.via == ("embedq (pyproject.toml)",)  # the closing list is no via of beta's
    assert not alpha.applies({"python_full_version": "3.11.7"})
    assert re.search(
        r"^alpha==1\.0 ; .*\n    --hash=sha256:a{64} \\$", alpha.requirement_line(), re.M
    )
