"""Locked wheels for hosts with no network: the wheelhouse and the GPU check's kit.

    python infra/wheels.py wheelhouse --python-version 3.12 --platform manylinux_2_28_x86_64
    python infra/wheels.py kit --python-version 3.12 --platform manylinux_2_28_x86_64

Both download the locked versions (requirements/runtime.txt, hashes checked) built for that
Python and platform, add embedq's own wheel, and write a requirements.txt of exactly the
files there, with their hashes, so one hash-checked pip command installs them offline.

- wheelhouse: every runtime dependency but torch (a GPU host brings its own CUDA build).
- kit: what `make gpu-check` imports that a GPU host lacks. The host is taken to have torch,
  transformers and numpy, and the scientific stack FlagEmbedding imports through datasets
  and sentence-transformers (pyarrow, pandas, scipy, scikit-learn, pillow), each with what
  it requires; `--host-out DIR` also downloads those (torch aside), to build such a host on
  a CPU machine for the kit's smoke test.

Every locked package must publish a wheel for the target (pip's error names one that does
not); the folder's requirements.txt carries the sha256 of each file it holds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from lockfile import LOCK_DEV, LOCK_RUNTIME, REPO, Pin, closure, needs, read_lock
from packaging.utils import canonicalize_name, parse_wheel_filename

# what the kit takes a GPU host to have already (with everything each of them requires)
HOST_PROVIDES = (
    "torch",
    "transformers",
    "numpy",
    "pyarrow",
    "pandas",
    "scipy",
    "scikit-learn",
    "pillow",
)
THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
KIT_LIMIT_MIB = 60  # the kit travels with the repository and the data to the GPU host


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    target = Target(args.python_version, args.platform)
    # the kit's pytest is a development dependency; the dev lock has the runtime's versions too
    lock = LOCK_RUNTIME if args.what == "wheelhouse" else LOCK_DEV
    pins = [pin for pin in read_lock(lock) if pin.applies(target.environment())]
    wanted = pins if args.what == "wheelhouse" else kit_pins(pins)
    size = fill(Path(args.out), wanted, target)
    print(f"{args.what}: {len(wanted) + 1} wheels, {size / 2**20:.1f} MiB in {args.out}")
    if args.what == "kit":
        write_manifest(Path(args.out), wanted, target, size)
        if args.host_out:
            fill(Path(args.host_out), host_pins(pins), target, with_embedq=False)
        if size > KIT_LIMIT_MIB * 2**20:
            print(f"the kit is over {KIT_LIMIT_MIB} MiB", file=sys.stderr)
            return 1
    return 0


class Target:
    """The Python and platform the wheels are for, as pip and environment markers see them."""

    def __init__(self, python_version: str, platform: str) -> None:
        if not re.fullmatch(r"3\.\d+", python_version):
            raise SystemExit(f"--python-version must look like 3.12, not {python_version!r}")
        match = re.fullmatch(r"manylinux_2_(\d+)_(x86_64|aarch64)", platform)
        if match is None:
            raise SystemExit(f"--platform must look like manylinux_2_28_x86_64, not {platform!r}")
        self.python_version = python_version
        self.platform = platform
        self.glibc_minor, self.machine = int(match.group(1)), match.group(2)

    def environment(self) -> dict[str, str]:
        """Marker variables of such a host (a CPython on Linux)."""
        this = self.python_version == THIS_PYTHON
        full = ".".join(map(str, sys.version_info[:3])) if this else None
        return {
            "python_version": self.python_version,
            "python_full_version": full or f"{self.python_version}.0",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "platform_machine": self.machine,
            "os_name": "posix",
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "extra": "",
        }

    def pip_flags(self) -> list[str]:
        """pip matches platform tags exactly: name every manylinux this glibc can run."""
        tags = [f"manylinux_2_{minor}_{self.machine}" for minor in range(self.glibc_minor, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        tags += [
            f"{tag}_{self.machine}" for minor, tag in legacy.items() if minor <= self.glibc_minor
        ]
        flags = ["--python-version", self.python_version, "--implementation", "cp"]
        for tag in tags:
            flags += ["--platform", tag]
        return flags


def kit_pins(pins: list[Pin]) -> list[Pin]:
    """The locked packages the GPU check imports, less what the host has."""
    imported = {canonicalize_name(name) for name in imported_distributions()}
    wanted = imported - provided_by_host(pins)
    return [pin for pin in pins if pin.name in wanted]


def host_pins(pins: list[Pin]) -> list[Pin]:
    """What the kit takes the host to have (torch is not locked: it is installed on its own)."""
    provided = provided_by_host(pins)
    return [pin for pin in pins if pin.name in provided]


def provided_by_host(pins: list[Pin]) -> set[str]:
    """HOST_PROVIDES and everything they require, by the lock's own graph."""
    return closure(HOST_PROVIDES, needs(pins))


def imported_distributions() -> list[str]:
    """The distributions the GPU check's modules load, asked of a fresh interpreter."""
    command = [sys.executable, "-m", "bench.gpucheck.preflight", "--distributions"]
    output = subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads(output.stdout)


def fill(folder: Path, pins: list[Pin], target: Target, *, with_embedq: bool = True) -> int:
    """Download ``pins``, add embedq's own wheel, write requirements.txt."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.whl"):
        stale.unlink()
    download(pins, target, folder)
    if with_embedq:
        pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(folder), str(REPO))
    wheels = sorted(folder.glob("*.whl"))
    (folder / "requirements.txt").write_text(requirements_of(wheels), encoding="utf-8")
    return sum(wheel.stat().st_size for wheel in wheels)


def download(pins: list[Pin], target: Target, folder: Path) -> None:
    """Fetch the wheels of ``pins`` for ``target``, hashes checked; pip names any that lack one."""
    pip_with_requirements(
        pins,
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(folder),
        *target.pip_flags(),
    )


def pip_with_requirements(pins: Iterable[Pin], *args: str) -> subprocess.CompletedProcess[str]:
    """pip with the pins as a hash-checked requirements file."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as requirements:
        requirements.write("\n".join(pin.requirement_line() for pin in pins) + "\n")
        requirements.flush()
        return pip(*args, "--require-hashes", "--requirement", requirements.name)


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    """pip in this interpreter; a failure ends the run with the end of pip's own message."""
    command = [sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"pip {args[0]} failed:\n{result.stderr[-3000:]}")
    return result


def requirements_of(wheels: list[Path]) -> str:
    """A hash-checked requirements file of exactly these wheels."""
    lines = ["# Exactly the wheels in this folder (infra/wheels.py); install with --no-index."]
    for wheel in wheels:
        name, version, *_ = parse_wheel_filename(wheel.name)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        lines.append(f"{name}=={version} --hash=sha256:{digest}")
    return "\n".join(lines) + "\n"


def write_manifest(folder: Path, pins: list[Pin], target: Target, size: int) -> None:
    manifest = {
        "python_version": target.python_version,
        "platform": target.platform,
        "packages": {pin.name: pin.version for pin in pins},
        "host_provides": list(HOST_PROVIDES),
        "bytes": size,
    }
    (folder / "kit.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    summary = __doc__.split("\n")[0]
    parser = argparse.ArgumentParser(prog="python infra/wheels.py", description=summary)
    parser.add_argument("what", choices=("wheelhouse", "kit"))
    parser.add_argument("--python-version", default=THIS_PYTHON)
    parser.add_argument("--platform", default="manylinux_2_28_x86_64")
    parser.add_argument("--out", required=True, help="the folder to fill (its wheels are replaced)")
    parser.add_argument("--host-out", help="kit only: also download the host's packages here")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
