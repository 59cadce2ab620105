"""What the commands print: stdout/stderr writers, OrbStack's server-error line, tables, sizes."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    from typing import Any

SERVER_PREFIX = "[-32098] "


class Out:
    """stdout/stderr writers (red server errors only when stderr is a TTY)."""

    @staticmethod
    def out(text: str) -> None:
        sys.stdout.write(text)

    @staticmethod
    def err(text: str) -> None:
        sys.stderr.write(text)

    @staticmethod
    def server_error(msg: str) -> None:
        line = SERVER_PREFIX + msg
        if sys.stderr.isatty():
            line = f"\x1b[31m{line}\x1b[0m"
        sys.stderr.write(line + "\n")


def si_size(n: int | None) -> str:
    if n is None:
        return ""
    if n < 1000:
        return f"{n} B"
    size = float(n)
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        size /= 1000
        if size < 1000:
            return f"{size:.1f} {unit}"
    return f"{size:.1f} EB"


def dump_json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2) + "\n"


def tabulate(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [c.ljust(widths[i] + 2) if i < len(r) - 1 else c for i, c in enumerate(r)]
        out.append("".join(cells).rstrip())
    return "\n".join(out) + "\n"


def display_name() -> str:
    """The name orbsim was run as, for hints (``orbctl`` unless ``orb``/``orbsim``)."""
    base = os.path.basename(sys.argv[0] if sys.argv else "") or "orbctl"
    return base if base in ("orb", "orbctl", "orbsim") else "orbctl"
