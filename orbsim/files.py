"""Small files orbsim keeps that other processes read while it writes them (``state.json``,
the fault counters, the network's state and leases, dnsmasq's host files, image-server notes):
read leniently, written atomically - a temporary file in the same directory, flushed to disk
(fsync) and renamed over the target, so a reader never sees an empty or half-written file."""

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


def write_text(p: Path, text: str, *, mode: int | None = None) -> None:
    """Replace ``p`` with ``text`` in one rename, after an fsync (``mode``: the file's mode)."""
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{os.urandom(3).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644 if mode is None else mode)
    try:
        if mode is not None:
            os.fchmod(fd, mode)  # whatever the umask
        os.write(fd, text.encode())
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, p)


def write_json(p: Path, data: dict[str, Any]) -> None:
    """Replace ``p`` with ``data`` atomically (:func:`write_text`)."""
    write_text(p, json.dumps(data, indent=1) + "\n")
