"""What ``orbctl`` prints and is told, as typed records: plain data, no process is run here.

``list``/``info`` JSON in every shape OrbStack has printed (docs/orbctl-contract.md §3: the flat
record before Feb 2025, ``{record, disk_size}``, then with ``ip4``/``ip6``; ``null`` for an empty
list before July 2023), the outcome of a call allowed to fail, and the flags of ``create``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ImageInfo:
    distro: str
    version: str
    arch: str
    variant: str = "default"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImageInfo:
        return cls(
            distro=str(data.get("distro", "")),
            version=str(data.get("version", "")),
            arch=str(data.get("arch", "")),
            variant=str(data.get("variant") or "default"),
        )


@dataclass(frozen=True)
class MachineRecord:
    """One entry of ``orbctl list -f json`` (OrbStack's ``ContainerRecord``)."""

    id: str
    name: str
    image: ImageInfo
    state: str
    default_username: str | None = None
    isolated: bool = False
    builtin: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MachineRecord:
        if not isinstance(data, Mapping) or "name" not in data:
            raise ValueError(f"not a machine record: {data!r}")
        config = data.get("config") or {}
        known = {"id", "name", "image", "config", "builtin", "state"}
        # Records older than 2024 had top-level isolated/running instead of config/state.
        state = data.get("state")
        if state is None:
            state = "running" if data.get("running") else "stopped"
        return cls(
            id=str(data.get("id", "")),
            name=str(data["name"]),
            image=ImageInfo.from_json(data.get("image") or {}),
            state=str(state),
            default_username=config.get("default_username"),
            isolated=bool(config.get("isolated", data.get("isolated", False))),
            builtin=bool(data.get("builtin", False)),
            extra={k: v for k, v in data.items() if k not in known},
        )


@dataclass(frozen=True)
class MachineInfo:
    """``orbctl info -f json``: the wrapped ``{record, disk_size, ip4, ip6}`` shape or the flat
    record printed before Feb 2025.  ``ip4``/``ip6`` are absent while a machine is not running."""

    record: MachineRecord
    disk_size: int | None = None
    ip4: str | None = None
    ip6: str | None = None
    #: Whether this output carried an address field at all.  OrbStack before mid-2025 printed
    #: no ``ip4``/``ip6`` (flat record before Feb 2025, ``{record, disk_size}`` until June):
    #: such a machine never shows an address, and readiness must not wait for one.
    reports_addresses: bool = True

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def state(self) -> str:
        return self.record.state

    @property
    def ready(self) -> bool:
        """Running with an IPv4 address: the readiness condition of docs/orbctl-contract.md §4."""
        return self.record.state == "running" and bool(self.ip4)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MachineInfo:
        if not isinstance(data, Mapping):
            raise ValueError(f"not a machine info object: {data!r}")
        if isinstance(data.get("record"), Mapping):
            record = MachineRecord.from_json(data["record"])
        else:
            record = MachineRecord.from_json(data)
        disk = data.get("disk_size")
        return cls(
            record=record,
            disk_size=int(disk) if isinstance(disk, (int, float)) else None,
            ip4=data.get("ip4") or None,
            ip6=data.get("ip6") or None,
            reports_addresses="ip4" in data or "ip6" in data,
        )


@dataclass(frozen=True)
class CreateOptions:
    """What ``orbctl create`` is told besides image and name, passed as one value from the spec
    down to the command line: ``-a ARCH``, ``-u USER``, ``-c USER_DATA``, and OrbStack 2.2's
    per-machine settings ``--cpus N``, ``--memory NM``, ``--disk NM``, ``--isolated``
    (docs/orbctl-contract.md §16)."""

    arch: str | None = None
    user: str | None = None
    user_data: str | None = None
    cpus: int | None = None
    memory_mib: int | None = None
    disk_bytes: int | None = None
    isolated: bool = False

    def argv(self) -> list[str]:
        flags: list[str] = []
        if self.arch:
            flags += ["-a", self.arch]
        if self.user:
            flags += ["-u", self.user]
        if self.user_data:
            flags += ["-c", self.user_data]
        if self.cpus is not None:
            flags += ["--cpus", str(self.cpus)]
        if self.memory_mib is not None:
            flags += ["--memory", size_flag(self.memory_mib * 1024**2)]
        if self.disk_bytes is not None:
            flags += ["--disk", size_flag(self.disk_bytes)]
        if self.isolated:
            flags.append("--isolated")
        return flags

    def has_settings(self) -> bool:
        """Whether any of OrbStack 2.2's per-machine settings is asked for."""
        return bool(self.machine_config()) or self.isolated

    def machine_config(self) -> dict[str, str]:
        """The ``machine.NAME.*`` keys of the limits (set explicitly on a clone: whether a clone
        inherits them is not documented)."""
        keys: dict[str, str] = {}
        if self.cpus is not None:
            keys["cpu"] = str(self.cpus)
        if self.memory_mib is not None:
            keys["memory_mib"] = str(self.memory_mib)
        if self.disk_bytes is not None:
            keys["disk_bytes"] = str(self.disk_bytes)
        return keys


def size_flag(size: int) -> str:
    """A byte count as the size flags take it: ``4G`` when whole gibibytes, else ``NM``."""
    gib, mib = 1024**3, 1024**2
    return f"{size // gib}G" if size % gib == 0 else f"{size // mib}M"


@dataclass(frozen=True)
class CompletedCall:
    """The outcome of one ``orbctl`` invocation that was allowed to fail (``run``/``push``/...)."""

    argv: list[str]
    returncode: int
    stdout: bytes
    stderr: bytes
    duration: float


def parse_machine_list(text: str) -> list[MachineRecord]:
    """Parse ``orbctl list -f json`` output (``[]``, or ``null`` from 2023 versions)."""
    data = json.loads(text) if text.strip() else []
    if data is None:
        return []
    if not isinstance(data, list):
        raise ValueError(f"expected a JSON array from list, got {type(data).__name__}")
    return [MachineRecord.from_json(item) for item in data]


def parse_machine_info(text: str) -> MachineInfo:
    return MachineInfo.from_json(json.loads(text))


__all__ = [
    "CompletedCall",
    "CreateOptions",
    "ImageInfo",
    "MachineInfo",
    "MachineRecord",
    "parse_machine_info",
    "parse_machine_list",
]
