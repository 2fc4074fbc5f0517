"""How many agents a run may hold: the fixed ceiling (:data:`MAX_AGENTS`), the measured peak
memory per agent and per persona, the memory this process may use (physical memory or a cgroup
limit, :func:`machine_memory`) and the one rule every entry point that sizes a population applies
(:func:`check_population`).

Kept apart from :mod:`friendsim.runtime.config`, which re-exports these names and applies the rule
to ``[agents].count``, so that the ``add_agents`` intervention
(:mod:`friendsim.runtime.interventions`) applies the same rule without importing the config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

MAX_AGENTS = 10_000_000
"""The most agents a run may hold, its ``add_agents`` interventions included (and the most
personas ``friendsim personas generate`` writes at once). The largest population the project
documents is a paper estimate for 1,000,000 agents (BENCHMARKS.md: about 20 GiB peak RSS); this
ceiling is ten times that, so it never stands in a researcher's way, yet refuses a mistyped
count (an extra zero or two) at once, with a message, instead of letting the process allocate
until the machine runs out of memory. Whether a population below it fits a given machine is
:func:`check_population`'s memory estimate."""

PEAK_BYTES_PER_AGENT: Mapping[str, int] = {"rounds": 38 * 1024, "continuous": 25 * 1024}
"""Peak RSS per agent of a run by ``[experiment].mode`` (BENCHMARKS.md, *Scale*: 100,000
agents with the baseline policy peak at about 38 KiB per agent in rounds mode and 25 KiB in
continuous mode). A lower bound for model-backed policies, which hold more per agent."""

PEAK_BYTES_PER_PERSONA = 3 * 1024
"""Peak memory per persona of ``friendsim personas generate`` (3.2 KiB measured at 100,000
personas: every persona is built before the file is written)."""


CGROUP_UNLIMITED = 2**60
"""A cgroup memory limit at or above this is no limit: cgroup v1 writes "unlimited" as the
largest page-aligned 64-bit number (9223372036854771712), never a real machine's memory."""


class MachineMemory(int):
    """The bytes of memory this process may use (an ``int``), with ``source``: where the figure
    comes from, ``"physical"`` or the cgroup file that sets a lower limit (as the system names
    it, e.g. ``"cgroup v2: /sys/fs/cgroup/ci.slice/memory.max"``). Messages name the source, so
    a refusal under a container limit does not claim the machine has less memory than it has."""

    source: str

    def __new__(cls, n_bytes: int, source: str = "physical") -> MachineMemory:
        self = super().__new__(cls, n_bytes)
        self.source = source
        return self


def _physical_memory() -> int | None:
    """Physical memory as the OS reports it (``None`` where it does not)."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None
    return pages * size if pages > 0 and size > 0 else None


def _limit_in(file: Path) -> int | None:
    """The byte limit a cgroup memory file states, ``None`` for no limit (``max``, a value at or
    above :data:`CGROUP_UNLIMITED`) and for anything missing, unreadable or not a number: a file
    that cannot be understood must never make a run look too big."""
    try:
        text = file.read_text(encoding="ascii").strip()
        value = int(text)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return value if 0 < value < CGROUP_UNLIMITED else None


def _cgroup_paths(root: Path) -> dict[str, str]:
    """The process's cgroup paths from ``/proc/self/cgroup``: ``"v2"`` from the ``0::/path``
    line, ``"v1"`` from the line whose controllers include ``memory``. A path that is not
    absolute or climbs (``..``) is ignored."""
    try:
        lines = (root / "proc/self/cgroup").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    paths: dict[str, str] = {}
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if not path.startswith("/") or ".." in path.split("/"):
            continue
        if hierarchy == "0" and controllers == "":
            paths["v2"] = path
        elif "memory" in controllers.split(","):
            paths["v1"] = path
    return paths


def _cgroup_files(mount: str, path: str | None, name: str) -> list[str]:
    """``mount/<path>/name`` for the process's cgroup and each of its ancestors, down to
    ``mount/name`` (the root, where a container's own cgroup is mounted): a limit anywhere above
    the process applies to it too."""
    parts = [p for p in (path or "").split("/") if p]
    return ["/".join([mount, *parts[:depth], name]) for depth in range(len(parts), -1, -1)]


def cgroup_memory_limits(root: str | Path = "/") -> list[MachineMemory]:
    """Every memory limit a cgroup sets on this process, each with the file that sets it: cgroup
    v2 ``memory.max`` and cgroup v1 ``memory.limit_in_bytes`` of the process's cgroup
    (``/proc/self/cgroup``) and of its ancestors up to the root file. No limit (``max``, v1's
    huge "unlimited"), no cgroup file, or a file that cannot be read or parsed: nothing.
    ``root`` is the directory that holds ``proc`` and ``sys`` (tests pass a fake tree)."""
    base = Path(root)
    paths = _cgroup_paths(base)
    candidates = [
        ("cgroup v2", f) for f in _cgroup_files("sys/fs/cgroup", paths.get("v2"), "memory.max")
    ] + [
        ("cgroup v1", f)
        for f in _cgroup_files("sys/fs/cgroup/memory", paths.get("v1"), "memory.limit_in_bytes")
    ]
    limits = []
    for version, file in candidates:
        if (limit := _limit_in(base / file)) is not None:
            limits.append(MachineMemory(limit, f"{version}: /{file}"))
    return limits


def machine_memory(*, root: str | Path = "/") -> MachineMemory | None:
    """The memory this process may use, in bytes: the smallest of the machine's physical memory
    (as the OS reports it) and every cgroup limit on the process
    (:func:`cgroup_memory_limits`), because under a container, a systemd slice or a CI runner the
    kernel kills the process at its cgroup's limit, well below the machine's memory. ``source``
    says which figure it is. ``None`` where none is known: the memory estimate of
    :func:`check_population` is then skipped. A few small file reads; never raises."""
    figures = cgroup_memory_limits(root)
    if (physical := _physical_memory()) is not None:
        figures.append(MachineMemory(physical))
    return min(figures, default=None)


def memory_phrase(memory: int) -> str:
    """How a message names ``memory``: ``"this machine's 16.0 GiB"`` for physical memory (or a
    bare number), ``"this machine's memory limit of 2.0 GiB (cgroup v2: /sys/fs/...)"`` for a
    cgroup limit (:class:`MachineMemory`)."""
    source = getattr(memory, "source", "physical")
    if source == "physical":
        return f"this machine's {gib(memory)}"
    return f"this machine's memory limit of {gib(memory)} ({source})"


def gib(n_bytes: float) -> str:
    """How a message writes a byte count: ``"16.0 GiB"``."""
    return f"{n_bytes / 2**30:,.1f} GiB"


def check_population(
    n: int,
    *,
    what: str = "agents",
    bytes_each: int | None = None,
    memory: int | None = None,
    basis: str = "measured",
    subject: str | None = None,
) -> int:
    """``n`` when a population of ``n`` ``what`` (agents, personas) is acceptable, else
    ``ValueError`` saying why; the one rule every entry point that sizes a population applies
    (``[agents].count``, ``add_agents``, sweep grids, ``friendsim personas generate --n``).

    Refused: fewer than 1; more than :data:`MAX_AGENTS` (a fixed ceiling, so whether a config
    is valid never depends on the machine); and, when both ``bytes_each`` (the peak memory of
    one, e.g. :data:`PEAK_BYTES_PER_AGENT`) and ``memory`` (the bytes this process may use,
    :func:`machine_memory`; the message names a cgroup limit as such) are given, a population
    whose estimated peak ``n * bytes_each`` exceeds ``memory``: it could only end killed for want of memory, so it is refused before
    anything is allocated. Nothing is allocated here; callers pass ``memory`` explicitly (tests
    inject it), and leave it out where only the fixed rules apply (parsing a config).
    ``basis`` says where ``bytes_each`` comes from, ``subject`` how the message names the
    population (default ``"<n> <what>"``)."""
    if n < 1:
        raise ValueError(f"must be at least 1, got {n}")
    subject = f"{n:,} {what}" if subject is None else subject
    if n > MAX_AGENTS:
        raise ValueError(
            f"{subject} exceeds the limit of {MAX_AGENTS:,} {what} (MAX_AGENTS: ten times "
            "the largest population friendsim documents, 1,000,000 agents)"
        )
    if bytes_each is not None and memory is not None and n * bytes_each > memory:
        raise ValueError(
            f"{subject} need about {gib(n * bytes_each)} of memory at their peak "
            f"({n:,} x {bytes_each / 1024:g} KiB per {what.removesuffix('s')}, {basis}), more "
            f"than {memory_phrase(memory)}"
        )
    return n
