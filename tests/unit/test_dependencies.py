"""An unsupported or broken dependency is one line that says how to fix it, not a traceback.

The subprocess tests put a fake distribution ahead of the real one on PYTHONPATH, as an
unlucky install would: transformers 5.24.0, or a FlagEmbedding whose import fails inside.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from embedq import dependencies
from embedq.dependencies import DependencyError

REPO = Path(__file__).resolve().parents[2]


def fake_distribution(site: Path, name: str, version: str, init: str | None = None) -> None:
    """A distribution's metadata (and, with ``init``, a package of that name) in ``site``."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if init is not None:
        (site / name).mkdir()
        (site / name / "__init__.py").write_text(init)


def run_python(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_every_runtime_dependency_is_supported_here():
    dependencies.check()  # the lock installs versions inside every declared range


def test_an_unsupported_version_is_one_line_with_the_fix(monkeypatch):
    monkeypatch.setattr(dependencies, "installed_version", lambda name: "5.24.0")
    line = dependencies.problem_with(Requirement("transformers>=4.44,<5.24"))
    assert line is not None and "\n" not in line
    assert "transformers 5.24.0 is installed" in line
    assert "transformers<5.24,>=4.44" in line
    assert 'pip install "transformers<5.24,>=4.44"' in line


def test_a_missing_package_is_named(monkeypatch):
    monkeypatch.setattr(dependencies, "installed_version", lambda name: None)
    with pytest.raises(DependencyError) as raised:
        dependencies.check(["FlagEmbedding"])
    assert raised.value.problems == [
        "FlagEmbedding is not installed; embedq needs FlagEmbedding<2,>=1.3. Fix: pip install "
        '"FlagEmbedding<2,>=1.3", or reinstall embedq from its lock (make install)'
    ]


def test_a_supported_version_is_no_problem(monkeypatch):
    monkeypatch.setattr(dependencies, "installed_version", lambda name: "5.23.0")
    assert dependencies.problem_with(Requirement("transformers>=4.44,<5.24")) is None


@pytest.mark.parametrize("command", [["-m", "embedq", "jobs"], ["-m", "embedq.demo"]])
def test_commands_refuse_an_unsupported_transformers_in_one_line(tmp_path, command):
    fake_distribution(tmp_path, "transformers", "5.24.0")
    result = run_python(tmp_path, *command)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "transformers 5.24.0 is installed, but embedq supports transformers<5.24" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_flagembedding_that_fails_inside_its_import_is_one_line(tmp_path):
    # what FlagEmbedding 1.4.2 met beside transformers 5.24, whatever transformers is here
    broken = (
        "raise ModuleNotFoundError(\"No module named 'transformers.modeling_attn_mask_utils'\")\n"
    )
    fake_distribution(tmp_path, "FlagEmbedding", "1.4.2", init=broken)
    program = (
        "from pathlib import Path\n"
        "from embedq.dependencies import DependencyError\n"
        "from embedq.models import flag\n"
        "try:\n"
        "    flag.load_dense(Path('.'))\n"
        "except DependencyError as error:\n"
        "    print(error)\n"
    )
    result = run_python(tmp_path, "-c", program)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith("FlagEmbedding 1.4.2 is installed but cannot be imported (")
    assert "transformers.modeling_attn_mask_utils" in line
    assert "make install" in line
