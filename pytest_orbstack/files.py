"""Files other processes read while we write them (the run's pool counters, clone sources,
shared handles, the registry): written atomically, so a reader never sees half a file.

:func:`write_json` writes a temporary file in the same directory, flushes it to disk (fsync)
and renames it over the target: a reader without the lock sees the old content or the new,
never an empty or torn file, and a crash leaves one of the two.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: Path, data: Any, *, indent: int | None = None) -> None:
    """Replace ``path`` with ``data`` as JSON, atomically (:func:`write_text`)."""
    write_text(path, json.dumps(data, indent=indent))


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


__all__ = ["read_json", "write_json", "write_text"]
