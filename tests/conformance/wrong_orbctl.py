"""A deliberately wrong ``orbctl``: orbsim with three differences from the contract.

* ``info -f json`` prints the flat record (the shape before Feb 2025) instead of
  ``{record, disk_size, ip4, ip6}``;
* "machine not found" is reworded to the invented text of pyinfra-orbstack's docs,
  ``[-32602] no machine found: 'NAME'``;
* ``clone`` starts the new machine (OrbStack leaves it stopped).

``test_wrong_orbctl.py`` runs part of the conformance suite against it and checks that the
suite fails there, and only there, with readable expected-vs-got.  Run as a script:
``python wrong_orbctl.py ARGS...`` (orbsim's state home comes from ``ORBSIM_HOME``).
"""

from __future__ import annotations

import json
import subprocess
import sys

REAL = [sys.executable, "-m", "orbsim"]


def main(args: list[str]) -> int:
    proc = subprocess.run([*REAL, *args], capture_output=True)
    out, err = proc.stdout, proc.stderr
    if args[:1] == ["info"] and "json" in args and proc.returncode == 0:
        out = (json.dumps(json.loads(out)["record"], indent=2) + "\n").encode()
    err = err.replace(b"[-32098] machine not found:", b"[-32602] no machine found:")
    if args[:1] == ["clone"] and proc.returncode == 0:
        subprocess.run([*REAL, "start", args[-1]], stdin=subprocess.DEVNULL, capture_output=True)
    sys.stdout.buffer.write(out)
    sys.stderr.buffer.write(err)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
