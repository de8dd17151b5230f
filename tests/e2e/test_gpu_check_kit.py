"""The GPU check runs from the kit alone: a fresh virtual environment holding a CPU torch and
what the kit takes a GPU host to have, the kit installed offline, and no network at all.

A GPU host is lent for minutes and reaches nothing: a package the kit forgot would end the
one run that measures the GPU path. This proves on a CPU, in the check's smoke mode, that
every import and code path of that run is served by the kit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.offline import cpu_torch_wheel, fresh_venv, offline, run

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_gpu_check_smoke_runs_from_the_kit_with_no_network(tmp_path, data_dir):
    kit, host, wheels = tmp_path / "kit", tmp_path / "host", tmp_path / "torch"
    run(sys.executable, "infra/wheels.py", "kit", "--out", kit, "--host-out", host, cwd=REPO)
    environment = fresh_venv(tmp_path / "venv", cpu_torch_wheel(wheels))
    python = environment / "bin" / "python"
    install = [python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps"]
    run(*install, "--find-links", host, "--require-hashes", "-r", host / "requirements.txt")

    # a copy of the repository, so nothing of this checkout's own caches or venv is seen
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns(".venv", ".cache", ".git", "dist"))
    out = tmp_path / "out"
    make = [
        "make",
        "gpu-check",
        f"PYTHON={python}",
        f"KIT={kit}",
        f"OUT={out}",
        f"DATA={data_dir}",
        "ARGS=--device cpu --smoke",
    ]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(offline(make), cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    summary = (out / "summary.md").read_text()
    for part in ("preflight", "tests", "runtime", "rerank"):
        assert f"| {part} | passed |" in summary
    assert len(list(out.iterdir())) <= 8  # a device host sends back at most 8 files
    locations = json.loads((out / "environment.json").read_text())["locations"]
    # FlagEmbedding came from the kit, torch and transformers from the "host" environment
    assert locations["FlagEmbedding"] == str(repo / ".cache" / "gpu-kit-site")
    assert locations["torch"].startswith(str(environment))
    assert locations["transformers"].startswith(str(environment))
    (runtime,) = out.glob("runtime-*.json")
    methods = json.loads(runtime.read_text())["methods"]
    assert methods["embedq"]["documents_lost"] == 0
    assert methods["embedq"]["tokens_per_s"] > 0
    (rerank,) = out.glob("rerank-*.json")
    assert json.loads(rerank.read_text())["targets"]["parity_max_abs_diff"]["met"]
