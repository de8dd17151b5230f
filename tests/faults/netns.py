"""Linux network namespaces as separate "hosts" whose network a test can cut and restore.

A ``Host`` is a network namespace joined to this machine by a veth pair on a private subnet,
10.213.<index>.0/24: the machine's end is 10.213.<index>.1 (where the services must listen to be
reachable from the host), the namespace's end 10.213.<index>.2. A process started with
``Host.popen`` sees only that link, so cutting it cuts the process off from every service
while it keeps running, as a worker on a machine that lost its network would.

Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN); ``namespaces_unavailable()`` says why not.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

SUBNET_PREFIX = "10.213"
FALLBACK_METRIC = 4000  # above the link's own route (metric 0), so it only counts when that goes


class NetnsError(RuntimeError):
    """An ``ip`` command failed; the message carries its stderr."""


def ip(*args: str) -> str:
    """Runs ``ip ARGS...`` and returns its stdout, or raises with its stderr."""
    argv = ["ip", *args]
    try:
        done = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)
    except subprocess.CalledProcessError as error:
        message = f"{' '.join(argv)} exited {error.returncode}: {error.stderr.strip()}"
        raise NetnsError(message) from error
    return done.stdout


def namespace_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def namespaces_unavailable() -> str | None:
    """None if this process can make hosts; otherwise why it cannot, in words."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"eqprobe-{secrets.token_hex(3)}"
    try:
        ip("netns", "add", probe)
        # veth may be missing from a container's kernel even where namespaces work
        ip("link", "add", f"{probe}a", "type", "veth", "peer", "name", f"{probe}b", "netns", probe)
    except NetnsError as error:
        return f"cannot create a network namespace with a veth pair: {error}"
    finally:
        with contextlib.suppress(NetnsError):
            ip("netns", "del", probe)  # takes the veth pair with it
        with contextlib.suppress(NetnsError):
            if link_exists(f"{probe}a"):
                ip("link", "del", f"{probe}a")
    return None


class Host:
    """A network namespace on the subnet 10.213.<index>.0/24, linked to this machine by veth.

    ``index`` (0 to 255) picks the subnet; two hosts that exist at the same time on one machine
    need different indexes. The names get a random suffix, so a host left behind by a killed
    test run does not block the next run's ``create()``.
    """

    def __init__(self, name: str, index: int) -> None:
        if not 0 <= index <= 255:
            raise ValueError(f"index {index} is outside 0..255")
        suffix = secrets.token_hex(3)
        self.name = name
        self.index = index
        self.namespace = f"eq{index}-{suffix}"
        self.host_link = f"eqh{index}-{suffix}"  # link names are limited to 15 characters
        self.inner_link = f"eqn{index}-{suffix}"

    def __repr__(self) -> str:
        return f"Host({self.name!r}, {self.index}) in {self.namespace} at {self.address}"

    def __enter__(self) -> Host:
        self.create()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.remove()

    @property
    def service_address(self) -> str:
        """This machine's address as the host sees it: where services must listen."""
        return f"{SUBNET_PREFIX}.{self.index}.1"

    @property
    def subnet(self) -> str:
        return f"{SUBNET_PREFIX}.{self.index}.0/24"

    @property
    def address(self) -> str:
        """The host's own address, as services see its connections come from."""
        return f"{SUBNET_PREFIX}.{self.index}.2"

    def create(self) -> None:
        if ip("-o", "addr", "show", "to", f"{self.service_address}/32").strip():
            taken = f"{self.service_address} is taken: another Host with index {self.index}?"
            raise NetnsError(taken)
        ip("netns", "add", self.namespace)
        try:
            self._link()
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        """Deletes the namespace (the veth pair goes with it), ending what still runs in it."""
        if namespace_exists(self.namespace):
            # a process left inside would keep the namespace, and so the veth pair, alive
            for pid in ip("netns", "pids", self.namespace).split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            ip("netns", "del", self.namespace)
        # the kernel frees a namespace's links in the background: give it a moment
        deadline = time.monotonic() + 5
        while link_exists(self.host_link) and time.monotonic() < deadline:
            time.sleep(0.05)
        if link_exists(self.host_link):
            with contextlib.suppress(NetnsError):
                ip("link", "del", self.host_link)
        with contextlib.suppress(NetnsError):  # absent if create() failed before adding it
            ip("route", "del", "blackhole", self.subnet, "metric", str(FALLBACK_METRIC))

    def popen(
        self, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path
    ) -> subprocess.Popen:
        """Starts ``argv`` inside the host, with ``env`` over this process's environment.

        The process gets a session of its own, so ``os.killpg(process.pid, ...)`` reaches
        its children too; ``ip netns exec`` execs ``argv``, so ``process.pid`` is the program.
        """
        with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, *argv],
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def cut(self) -> None:
        """The host loses the network but keeps running.

        The machine's end of the link goes down: packets either way are dropped without a
        reset, so open connections hang until a timeout notices, as with a pulled cable.
        What was sent and not yet acknowledged is retransmitted once the link is restored.
        (A new connection from this machine to the host fails at once, with EINVAL.)
        """
        ip("link", "set", self.host_link, "down")

    def restore(self) -> None:
        """Brings the link back up; connections that have not timed out yet carry on."""
        ip("link", "set", self.host_link, "up")
        # the kernel may start passing packets on a link a moment after "ip link set up"
        # returns (its link watch runs up to a second later): what is sent before is dropped
        deadline = time.monotonic() + 5
        while not self._link_is_up():
            if time.monotonic() > deadline:
                raise NetnsError(f"the link of {self!r} is not up 5 s after restore()")
            time.sleep(0.05)
        # an address lookup (ARP) begun during the cut may have one try left, which it can spend
        # before the link passes packets and then fail what waits on it: start afresh
        ip("-n", self.namespace, "neigh", "flush", "dev", self.inner_link)

    def _link_is_up(self) -> bool:
        # ip reads the state under the kernel's lock that link watch holds while it acts
        outside = ip("-o", "link", "show", self.host_link)
        inside = ip("-n", self.namespace, "-o", "link", "show", self.inner_link)
        return "state UP" in outside and "state UP" in inside

    def _link(self) -> None:
        peer = ("peer", "name", self.inner_link, "netns", self.namespace)
        ip("link", "add", self.host_link, "type", "veth", *peer)
        ip("addr", "add", f"{self.service_address}/24", "dev", self.host_link)
        ip("link", "set", self.host_link, "up")
        # a link that is down loses its subnet route, and the host's address would then be
        # reached by the default route, out of the machine: this drops it instead
        ip("route", "replace", "blackhole", self.subnet, "metric", str(FALLBACK_METRIC))
        inside = ("-n", self.namespace)
        ip(*inside, "addr", "add", f"{self.address}/24", "dev", self.inner_link)
        ip(*inside, "link", "set", self.inner_link, "up")
        ip(*inside, "link", "set", "lo", "up")
