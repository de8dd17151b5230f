"""The wheelhouse installs embedq with the README's two commands on a host with no network,
beside the torch it already has, and what it installed runs: the command line, the worker's
and the API's modules, and an embedding of a model folder."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.e2e.offline import cpu_torch_wheel, fresh_venv, offline, run

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

EMBED = """
import sys
import embedq.api.http.app, embedq.workers.tasks
from embedq.models import Embedder
results = Embedder.load(sys.argv[1]).embed(["a first document", "and a second one"])
print(sum(len(result.chunks) for result in results if result.ok))
"""


def test_the_wheelhouse_installs_and_runs_with_no_network(tmp_path, build_model):
    wheelhouse = tmp_path / "wheelhouse"
    run(sys.executable, "infra/wheels.py", "wheelhouse", "--out", wheelhouse, cwd=REPO)
    assert list(wheelhouse.glob("embedq-*.whl"))
    host = fresh_venv(tmp_path / "host", cpu_torch_wheel(tmp_path / "torch"))
    python = str(host / "bin" / "python")
    requirements = str(wheelhouse / "requirements.txt")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["EMBEDQ_HOME"] = str(tmp_path / "home")
    for step in (  # the README's two commands, then what the installed embedq can do
        [
            python,
            "-m",
            "pip",
            "install",
            "--no-index",
            "--find-links",
            str(wheelhouse),
            "--no-deps",
            "--require-hashes",
            "-r",
            requirements,
        ],
        [python, "-m", "pip", "check"],
    ):
        run(*offline(step), cwd=tmp_path, env=env)
    jobs = run(*offline([str(host / "bin" / "embedq"), "jobs", "--json"]), cwd=tmp_path, env=env)
    assert json.loads(jobs.stdout) == []
    folder = build_model(style="bert", m3_heads=False)
    embedded = run(*offline([python, "-c", EMBED, str(folder)]), cwd=tmp_path, env=env)
    assert embedded.stdout.strip() == "2"
