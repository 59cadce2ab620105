#!/usr/bin/env python3
"""An ``orbctl`` that answers like an older OrbStack: a wrapper around the real simulator.

``OLD_ORBCTL_REAL`` is the orbctl to wrap; ``OLD_ORBCTL_SHAPE`` says how old (comma-separated):

* ``flat``: ``info -f json`` prints the bare record (OrbStack before Feb 2025);
* ``no-ip``: ``info -f json`` is ``{record, disk_size}`` without ``ip4``/``ip6`` (Feb-June 2025);
* ``null-lists``: an empty ``list -f json`` prints ``null`` (before July 2023);
* ``no-settings``: no per-machine settings (before 2.2): ``create --cpus/--memory/--disk/
  --isolated`` is cobra's unknown flag, ``config set machine.N.cpu`` an unknown machine key.
* ``rejects-settings``: the same refusals, with a version that says nothing useful
  (``dev``, as a development build's): only the refusal itself tells.

``version`` says a version of that age (1.9.5 for ``flat``, 1.11.3 for ``no-ip``, 2.1.2 for
``no-settings``): the plugin decides from it whether addresses are reported.

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
    old = _version(shapes)
    if command == "version" and old:
        sys.stdout.write(
            f"Version: {old}\nCommit: 0000000000000000000000000000000000000000 (v{old})\n"
        )
        return 0
    if shapes & {"no-settings", "rejects-settings"} and _asks_for_settings(args):
        return 1
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


def _version(shapes: set[str]) -> str | None:
    if "flat" in shapes:
        return "1.9.5 (1090500)"
    if "no-ip" in shapes:
        return "1.11.3 (1110300)"
    if "no-settings" in shapes:
        return "2.1.2 (2010200)"
    if "rejects-settings" in shapes:
        return "dev"
    return None


def _asks_for_settings(args: list[str]) -> bool:
    """Answer like an OrbStack before 2.2 to a per-machine setting (and say so)."""
    if args[:1] == ["create"]:
        for arg in args[1:]:
            flag = arg.split("=", 1)[0]
            if flag in ("--cpus", "--memory", "--disk", "--isolated"):
                sys.stderr.write(f"Error: unknown flag: {flag}\nUsage:\n  orbctl create [flags]\n")
                return True
    if args[:2] == ["config", "set"] and len(args) > 2 and args[2].startswith("machine."):
        key = args[2].rsplit(".", 1)[-1]
        if key in ("cpu", "memory_mib", "disk_bytes"):
            sys.stderr.write(f"Unknown machine config key: {key}\n")
            return True
    return False


if __name__ == "__main__":
    sys.exit(main())
