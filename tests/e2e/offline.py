"""Helpers for tests that install embedq on a machine with no network: a fresh virtual
environment with this machine's CPU torch, and commands run where no network exists."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import IN_CI


def run(*command: str | Path, **options) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, **options
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def cpu_torch_wheel(folder: Path) -> Path:
    """This machine's own torch wheel, from where pip finds it without an index."""
    import torch

    pin = f"torch=={torch.__version__}"
    command = [sys.executable, "-m", "pip", "download", "--no-index", "--no-deps", "-d", folder]
    result = subprocess.run([*map(str, command), pin], capture_output=True, text=True)
    wheels = list(folder.glob("torch-*.whl"))
    if result.returncode != 0 or not wheels:
        message = f"no wheel of {pin} on this machine for an offline install"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return wheels[0]


def offline(command: list[str]) -> list[str]:
    """The command in a network namespace of its own: not even loopback is up."""
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "--net", "true"], capture_output=True)
    if unshare is None or probe.returncode != 0:
        if IN_CI:
            pytest.fail("unshare --net is needed to run the check with no network")
        pytest.skip("unshare --net is not permitted here")
    return [unshare, "--net", *command]


def fresh_venv(folder: Path, torch_wheel: Path) -> Path:
    """A new virtual environment holding torch and nothing else of this machine's."""
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", torch_wheel)
    return folder
