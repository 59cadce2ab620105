"""Per-machine settings as OrbStack 2.1-2.2 has them (docs/orbctl-contract.md §16): the
``create`` flags (``--cpus``, ``--memory``, ``--disk``, ``--isolated``, ``--isolate-network``,
``--forward-ssh-agent``, ``--mount``), the ``machine.NAME.*`` config keys, the keys ``info``'s
``record.config`` shows on 2.2.3, and the LXC limits that make CPU and memory real.

What orbsim does with them: CPUs become a cpuset (``nproc`` in the machine) and a CPU quota,
memory a memory cgroup limit (``memory.max`` / ``memory.limit_in_bytes`` in the machine; not
``/proc/meminfo``, which shows the host's without lxcfs); the disk limit is only recorded and
reported (an overlay on the host's file system has no size of its own); ``--isolated`` is
recorded (orbsim machines never see the host's files anyway), ``--isolate-network`` and
``--forward-ssh-agent`` are recorded only; ``--mount`` is refused (orbsim mounts nothing of the
host).  Limits apply at each start, so a ``config set`` on a stopped machine (or a clone, which
inherits its source's config as OrbStack's clones inherit ``isolated``) applies at its next start.
What orbsim cannot do is listed in docs/simulator.md ("Machine settings").
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .errors import ClientError

#: ``machine.NAME.KEY`` -> the record's config field.
MACHINE_KEYS: dict[str, str] = {
    "username": "default_username",
    "cpu": "cpu_limit",
    "memory_mib": "memory_limit_mib",
    "disk_bytes": "disk_limit_bytes",
    "isolated": "isolated",
    "isolate_network": "isolate_network",
}
_SIZE = re.compile(r"^(\d+)\s*([KMGT]i?B?|B)?$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(flag: str, value: str) -> int:
    """``4G``, ``512M``, ``4096MiB`` or a number of bytes -> bytes."""
    m = _SIZE.match(value.strip())
    if not m:
        raise ClientError(f'invalid argument "{value}" for "--{flag}" flag: invalid size')
    unit = (m.group(2) or "").upper()[:1]
    return int(m.group(1)) * _UNITS[unit]


def create_config(opts: dict[str, Any], user: str) -> dict[str, Any]:
    """The record's config for ``create``'s flags (the two ``list`` shows, then the rest)."""
    config: dict[str, Any] = {"isolated": bool(opts.get("isolated")), "default_username": user}
    if opts.get("isolate-network"):
        config["isolate_network"] = True
    if opts.get("forward-ssh-agent"):
        config["forward_ssh_agent"] = True
    if opts.get("cpus") is not None:
        cpus = str(opts["cpus"])
        if not cpus.isdigit() or int(cpus) < 1:
            raise ClientError(f'invalid argument "{cpus}" for "--cpus" flag: want a number')
        config["cpu_limit"] = int(cpus)
    if opts.get("memory") is not None:
        config["memory_limit_mib"] = max(1, parse_size("memory", str(opts["memory"])) // 1024**2)
    if opts.get("disk") is not None:
        config["disk_limit_bytes"] = parse_size("disk", str(opts["disk"]))
    if opts.get("mount"):
        raise ClientError(
            "orbsim cannot mount host directories (--mount): its machines never see the host's"
            " files (docs/simulator.md, Machine settings)",
            usage=False,
        )
    return config


def parse_machine_value(key: str, value: str) -> Any:
    if key == "username":
        return value
    if key in ("isolated", "isolate_network"):
        if value not in ("true", "false"):
            raise ClientError(
                f'invalid value for {key}: "{value}" (want true or false)', usage=False
            )
        return value == "true"
    if not value.isdigit() or int(value) < 1:
        raise ClientError(f'invalid value for {key}: "{value}"', usage=False)
    return int(value)


def split_machine_key(key: str) -> tuple[str, str]:
    """``machine.NAME.KEY`` (or ``machine."N.A.ME".KEY``) -> (NAME, KEY)."""
    body = key[len("machine.") :]
    if body.startswith('"'):
        name, _, sub_key = body[1:].partition('".')
    else:
        name, _, sub_key = body.rpartition(".")
    return name, sub_key


def machine_lines(cfg: dict[str, Any]) -> dict[str, str]:
    """``config show``'s ``machine.NAME.KEY`` values of the limits set (besides ``username``;
    OrbStack's listing of them is not documented: orbsim shows what it was told)."""
    keys = {"cpu": "cpu_limit", "memory_mib": "memory_limit_mib", "disk_bytes": "disk_limit_bytes"}
    return {k: str(cfg[f]) for k, f in keys.items() if cfg.get(f) is not None}


def list_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """``list -f json``'s config on 2.2.3: still ``{isolated, default_username}`` [CAP]."""
    return {
        "isolated": bool(cfg.get("isolated", False)),
        "default_username": cfg.get("default_username", ""),
    }


def info_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """``info -f json``'s ``record.config`` on 2.2.3 [CAP]: more keys than ``list``'s, the
    limits only when set, the mounts of a machine that has them [3P]."""
    out: dict[str, Any] = {
        "isolated": bool(cfg.get("isolated", False)),
        "forward_ssh_agent": bool(cfg.get("forward_ssh_agent", False)),
        "isolate_network": bool(cfg.get("isolate_network", False)),
        "default_username": cfg.get("default_username", ""),
        "http_port": cfg.get("http_port"),
        "https_port": cfg.get("https_port"),
    }
    for key in ("memory_limit_mib", "cpu_limit", "disk_limit_bytes", "mounts"):
        if cfg.get(key) is not None:
            out[key] = cfg[key]
    return out


def lxc_limits(cfg: dict[str, Any]) -> list[str]:
    """LXC config lines for the machine's CPU and memory limits (cgroup v2 or v1 keys, as the
    host has them)."""
    lines: list[str] = []
    v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    cpus = cfg.get("cpu_limit")
    if cpus:
        # the first N CPUs this process may use (a CI runner's may not start at 0)
        cpuset = ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[: int(cpus)])
        if v2:
            lines += [
                f"lxc.cgroup2.cpuset.cpus = {cpuset}",
                f"lxc.cgroup2.cpu.max = {int(cpus) * 100000} 100000",
            ]
        else:
            lines += [
                f"lxc.cgroup.cpuset.cpus = {cpuset}",
                "lxc.cgroup.cpu.cfs_period_us = 100000",
                f"lxc.cgroup.cpu.cfs_quota_us = {int(cpus) * 100000}",
            ]
    memory = cfg.get("memory_limit_mib")
    if memory:
        limit = int(memory) * 1024**2
        lines.append(
            f"lxc.cgroup2.memory.max = {limit}"
            if v2
            else f"lxc.cgroup.memory.limit_in_bytes = {limit}"
        )
    return lines
