#!/usr/bin/env python3
"""An ``orbctl`` that answers like an older OrbStack: a wrapper around the real simulator.

``OLD_ORBCTL_REAL`` is the orbctl to wrap; ``OLD_ORBCTL_SHAPE`` says how old (comma-separated):

* ``flat``: ``info -f json`` prints the bare record (OrbStack before Feb 2025);
* ``no-ip``: ``info -f json`` is ``{record, disk_size}`` without ``ip4``/``ip6`` (Feb-June 2025);
* ``null-lists``: an empty ``list -f json`` prints ``null`` (before July 2023).

Every other command, and every stream of ``run``/``push``/``pull``, goes to the real one as is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def main() -> int:
    real = os.environ["OLD_ORBCTL_REAL"]
    shapes = set(os.environ.get("OLD_ORBCTL_SHAPE", "").split(","))
    args = sys.argv[1:]
    command = args[0] if args else ""
    if command not in ("info", "list") or "json" not in args:
        os.execv(real, [real, *args])
    proc = subprocess.run([real, *args], capture_output=True, text=True)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout)
        return proc.returncode
    data = json.loads(proc.stdout)
    if command == "info":
        if "flat" in shapes:
            data = data["record"] if isinstance(data, dict) and "record" in data else data
        elif "no-ip" in shapes and isinstance(data, dict):
            data = {k: v for k, v in data.items() if k not in ("ip4", "ip6")}
    elif command == "list" and "null-lists" in shapes and data == []:
        data = None
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
