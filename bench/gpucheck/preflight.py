"""Before any part starts: everything the parts import, imported, and the machine described.

A GPU host is lent for minutes: a missing package must show in the first seconds, as one
line naming it, not after the GPU has started.

    python -m bench.gpucheck.preflight --device cuda --out environment.json
    python -m bench.gpucheck.preflight --distributions   # for the kit builder (infra/wheels.py)
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import platform
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from embedq.dependencies import MODEL_RUNTIME, DependencyError, cannot_import, check

# what pytest tests/gpu and the runtime and rerank benchmarks import, lazily ones included
MODULES = (
    "torch",
    "transformers",
    "numpy",
    "psutil",
    "pytest",
    "FlagEmbedding",
    "sentence_transformers",
    "embedq.models",
    "embedq.models.synthetic",
    "bench.runtime.cli",
    "bench.rerank.cli",
)
# the distribution that provides a module, where pip's name differs from the import name
PACKAGES = {"sentence_transformers": "sentence-transformers"}
LOCATED = ("torch", "transformers", "FlagEmbedding", "sentence_transformers", "embedq")
REPORTED = (
    "torch",
    "transformers",
    "numpy",
    "FlagEmbedding",
    "sentence-transformers",
    "datasets",
    "pyarrow",
    "huggingface-hub",
    "tokenizers",
    "pytest",
    "embedq",
)


def problems(modules: Iterable[str] = MODULES) -> list[str]:
    """One line per unsupported version or module that does not import; empty when all is well."""
    try:
        check(MODEL_RUNTIME)
    except DependencyError as error:
        return error.problems
    found = []
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as error:  # whatever a broken package raises on import
            package = PACKAGES.get(module, module.split(".")[0])
            found.append(cannot_import(package, error))
    return found


def loaded_distributions() -> list[str]:
    """The installed distributions whose modules this interpreter has loaded."""
    providers = importlib.metadata.packages_distributions()
    names = {
        dist for module in list(sys.modules) for dist in providers.get(module.split(".")[0], ())
    }
    return sorted(names)


def describe(device: str) -> dict[str, Any]:
    """Versions, and the device the parts will run on (read in this child, not the parent)."""
    import torch

    from bench.runtime.report import device_name, slug

    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in REPORTED},
        "locations": {name: _location(name) for name in LOCATED},
        "torch_cuda": torch.version.cuda,
        "device": device,
    }
    if device.startswith("cuda") and not torch.cuda.is_available():
        facts["problems"] = [
            f"--device {device}, but torch {torch.__version__} sees no CUDA device"
        ]
        return facts
    name = device_name(device if device != "cuda" else "cuda:0")
    facts.update(device_name=name, device_slug=slug(name))
    if device.startswith("cuda"):
        properties = torch.cuda.get_device_properties(device)
        facts.update(
            capability=f"{properties.major}.{properties.minor}",
            memory_bytes=properties.total_memory,
            devices=torch.cuda.device_count(),
        )
    return facts


def _location(module: str) -> str | None:
    """The folder a module was imported from: the kit's, or the host's own site-packages."""
    origin = getattr(sys.modules.get(module), "__file__", None)
    return str(Path(origin).parents[1]) if origin else None


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    found = problems()
    for line in found:
        print(f"gpu-check: {line}", file=sys.stderr)
    if found:
        return 1
    if args.distributions:
        print(json.dumps(loaded_distributions()))
        return 0
    facts = describe(args.device)
    Path(args.out).write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    for line in facts.get("problems", []):
        print(f"gpu-check: {line}", file=sys.stderr)
    return 1 if facts.get("problems") else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpucheck.preflight")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default="environment.json")
    parser.add_argument(
        "--distributions", action="store_true", help="print the distributions the parts load"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
