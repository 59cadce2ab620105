"""Small JSON files orbsim keeps beside its state (network, leases, image-server notes): read
leniently, written atomically (a reader never sees half a file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    from typing import Any


def read_json(p: Path) -> dict[str, Any] | None:
    """The object in ``p``; ``None`` if it is missing or not JSON."""
    try:
        data: dict[str, Any] = json.loads(p.read_text())
        return data
    except (OSError, ValueError):
        return None


def write_json(p: Path, data: dict[str, Any]) -> None:
    """Replace ``p`` with ``data`` in one rename."""
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, p)
