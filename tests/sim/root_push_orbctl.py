#!/usr/bin/env python3
"""An ``orbctl`` whose ``push`` leaves the file as another copy model might: root's, mode 0600.

OrbStack 2.2 changed how ``push`` copies (docs/orbctl-contract.md §16: the new owner/mode
semantics are not documented).  ``ROOT_PUSH_REAL`` is the orbctl to wrap; after a successful
``push -m NAME SRC DEST`` this makes DEST ``root:root 0600`` inside the machine.  Everything else
goes to the real one as is.
"""

from __future__ import annotations

import os
import subprocess
import sys


def main() -> int:
    real = os.environ["ROOT_PUSH_REAL"]
    args = sys.argv[1:]
    if args[:2] != ["push", "-m"] or len(args) < 5:
        os.execv(real, [real, *args])
    proc = subprocess.run([real, *args])
    if proc.returncode != 0:
        return proc.returncode
    name, dest = args[2], args[-1]
    fix = ["sh", "-c", 'chown root:root -- "$1" && chmod 0600 -- "$1"', "sh", dest]
    return subprocess.run([real, "run", "-m", name, "-u", "root", "-w", "", *fix]).returncode


if __name__ == "__main__":
    sys.exit(main())
