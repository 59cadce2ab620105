"""pyinfra inventory files of ``@orb/NAME`` hosts in groups (no pyinfra import).

An inventory file is what ``pyinfra INVENTORY.py DEPLOY.py`` reads: one module-level variable
per group, each ``([(host, host data), ...], group data)``.  The deploy process runs a
multi-host deploy from such a file, through pyinfra_cli's own inventory loader (so a
``group_data/`` directory next to the deploy counts as it does for the CLI), and
:meth:`~pytest_orbstack.topology.OrbInventory.write_inventory` writes the same file for a test
(or a person, with ``--orbstack-keep``) to run ``pyinfra`` by hand.

Each host's data says how to reach its machine (``orb_orbctl``, ``orb_env``: the connector's
keys) and where it is (:data:`HOST_KEYS`).
"""

from __future__ import annotations

import json
import keyword
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_orbstack.errors import ConfigError

#: Host data every host of an inventory carries (documented in the README).
HOST_KEYS = ("orb_name", "orb_fqdn", "orb_ip")
#: Group names pyinfra gives a meaning of its own: ``all`` is the data of every host.
RESERVED_GROUPS = frozenset({"all"})


def check_group_name(name: object, where: str) -> str:
    """A group name as the ``pyinfra`` CLI reads groups: a Python identifier that is not a
    keyword, not ``_private`` (the CLI ignores those) and not ``all``."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ConfigError(
            f"{where}: group name {name!r} must be a Python identifier (pyinfra reads groups "
            f"as variables of the inventory file), e.g. 'web' or 'db_primary'"
        )
    if name.startswith("_"):
        raise ConfigError(
            f"{where}: group name {name!r} starts with '_': pyinfra ignores such variables "
            f"in an inventory file; drop the underscore"
        )
    if name in RESERVED_GROUPS:
        raise ConfigError(
            f"{where}: group name {name!r} is reserved by pyinfra (the data of every host); "
            f"use deploy_data= for data of all hosts and another name for the group"
        )
    return name


def inventory_source(
    groups: Mapping[str, Sequence[tuple[str, Mapping[str, Any]]]],
    group_data: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """The text of an inventory file: ``group -> [(machine name, host data)]``."""
    lines = [
        "# pyinfra inventory of OrbStack machines, written by pytest-orbstack.",
        "# Run: pyinfra THIS_FILE deploy.py -y",
        "",
    ]
    group_data = group_data or {}
    for group, hosts in groups.items():
        check_group_name(group, "inventory")
        entries = "".join(
            f"        ({f'@orb/{name}'!r}, {_literal(data)}),\n" for name, data in hosts
        )
        data = _literal(group_data.get(group, {}))
        lines.append(f"{group} = (\n    [\n{entries}    ],\n    {data},\n)")
    return "\n".join(lines) + "\n"


def _literal(value: Mapping[str, Any]) -> str:
    """A JSON-like dict as a Python literal (``repr`` of JSON-loaded data is valid Python)."""
    return repr(json.loads(json.dumps(dict(value), sort_keys=True)))


def write_inventory_file(
    path: str | os.PathLike[str],
    groups: Mapping[str, Sequence[tuple[str, Mapping[str, Any]]]],
    group_data: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write :func:`inventory_source` to ``path`` atomically; return the path."""
    target = Path(path)
    text = inventory_source(groups, group_data)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


__all__ = [
    "HOST_KEYS",
    "RESERVED_GROUPS",
    "check_group_name",
    "inventory_source",
    "write_inventory_file",
]
