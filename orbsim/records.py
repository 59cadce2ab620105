"""A machine: its record (one constructor, :func:`new_record`), the record as ``orbctl`` shows it
(:func:`public_record`), its disk usage and its console log."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from . import rootfs
from . import state as S
from .files import write_text

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    from typing import Any


def new_record(
    mid: str,
    name: str,
    image: dict[str, str],
    config: dict[str, Any],
    *,
    lower: str | None = None,
    **extra: Any,
) -> S.Record:
    """The record of a machine being made (create, clone, import): ``creating``, reserved by
    this process; ``extra`` are the optional keys (``suite``, ``source``, ``substituted``)."""
    return {
        "id": mid,
        "name": name,
        "image": dict(image),
        "config": dict(config),
        "builtin": False,
        "state": "creating",
        "owner": S.me(),
        "busy": None,
        "holder": None,
        "ip4": None,
        "ip6": ip6_for(mid),
        "lower": lower,
        "created": time.time(),
        **extra,
    }


def public_record(
    rec: S.Record, state: str | None = None, *, full_config: bool = False
) -> dict[str, Any]:
    """A ContainerRecord in the exact field order of docs/orbctl-contract.md §3; ``info``'s
    (``full_config``) carries 2.2.3's longer config, ``list``'s the two keys (§16)."""
    from .settings import info_config, list_config

    img = rec["image"]
    cfg = rec.get("config") or {}
    out_cfg = info_config(cfg) if full_config else list_config(cfg)
    return {
        "id": rec["id"],
        "name": rec["name"],
        "image": {
            "distro": img["distro"],
            "version": img["version"],
            "arch": img["arch"],
            "variant": img.get("variant", "default"),
        },
        "config": out_cfg,
        "builtin": False,
        "state": state or rec["state"],
    }


def ip6_for(mid: str) -> str:
    import hashlib

    h = hashlib.sha256(mid.encode()).hexdigest()
    groups = [int(h[0:4], 16), int(h[4:6] + "ff", 16), int("fe" + h[6:8], 16), int(h[8:12], 16)]
    return "fd07:b51a:cc66:0:" + ":".join(f"{g:x}" for g in groups)


def lower_size(lower: Path) -> int:
    f = lower.parent / "size"
    try:
        return int(f.read_text())
    except (OSError, ValueError):
        pass
    size = rootfs.dir_size(lower) if lower.exists() else 0
    with contextlib.suppress(OSError):
        write_text(f, str(size))
    return size


def disk_size(home: Path, rec: S.Record) -> int | None:
    try:
        lower = Path(rec["lower"]) if rec.get("lower") else None
        total = lower_size(lower) if lower else 0
        return total + rootfs.dir_size(S.machine_dir(home, rec["id"]) / "upper")
    except OSError:
        return None


def console_log(home: Path, mid: str) -> Path:
    return S.machine_dir(home, mid) / "console.log"


def note(home: Path, mid: str, msg: str) -> None:
    with contextlib.suppress(OSError), open(console_log(home, mid), "a") as f:
        f.write(f"[orbsim {time.strftime('%H:%M:%S')}] {msg}\n")
