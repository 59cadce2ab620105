"""Cloning: the run-wide sources fresh machines are cloned from, and the shell scripts that
prepare a machine to be cloned (generalize) and check a clone once it started (readiness).

Kept apart from :mod:`pytest_orbstack.lifecycle`, which decides *when* to clone; these are
*how*: which source is free, and what runs inside the machine (as root, one ``orbctl run``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from filelock import FileLock, Timeout

from pytest_orbstack.coordination import SharedDir


class CloneSources:
    """The run-wide list of machines fresh machines of one origin are cloned from: the origin
    (a base or template) and its replicas.  Shared by every xdist worker through the run's
    directory; each source has its own lock, held for the length of one clone."""

    POLL = 0.05

    def __init__(self, shared: SharedDir, origin: str) -> None:
        self.shared = shared
        self.origin = origin
        self.path = shared.path / f"sources-{origin}.json"

    def _read(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            data = {}
        return {"replicas": data.get("replicas", []), "planned": data.get("planned", 0)}

    def names(self) -> list[str]:
        return [self.origin, *self._read()["replicas"]]

    def grow(self, limit: int) -> bool:
        """Claim the making of one more replica, if the sources (made and being made) are
        fewer than ``limit``."""
        with self.shared.lock(f"sources-{self.origin}"):
            data = self._read()
            if 1 + data["planned"] >= limit:
                return False
            data["planned"] += 1
            self.path.write_text(json.dumps(data))
            return True

    def add(self, name: str) -> None:
        with self.shared.lock(f"sources-{self.origin}"):
            data = self._read()
            data["replicas"].append(name)
            self.path.write_text(json.dumps(data))

    def acquire(self) -> tuple[str, FileLock, bool]:
        """Wait for a source nobody is cloning from; return it with its lock held, and whether
        every source was busy at first (the sign that more sources would help)."""
        waited = False
        while True:
            for name in self.names():
                lock = self.shared.lock(f"clone-{name}", timeout=0)
                try:
                    lock.acquire()
                except Timeout:
                    continue
                return name, lock, waited
            waited = True
            time.sleep(self.POLL)


#: Readiness, as root, in one shell: an identity of its own for a clone of a generalized origin
#: (systemd makes the machine-id itself when it boots with an empty one; other inits get one
#: here), SSH host keys where sshd is installed (as package installation makes them on a fresh
#: machine), then systemd's own verdict that booting is over (running or degraded).
READY_SCRIPT = """
if [ -f /etc/machine-id ] && [ ! -s /etc/machine-id ]; then
  systemd-machine-id-setup >/dev/null 2>&1 || dbus-uuidgen >/etc/machine-id 2>/dev/null ||
    od -An -N16 -tx1 /dev/urandom | tr -d ' \\n' >/etc/machine-id
fi
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  timeout 120 systemctl is-system-running --wait >/dev/null 2>&1
fi
if [ -d /etc/ssh ] && command -v ssh-keygen >/dev/null 2>&1 &&
   ! ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1; then
  ssh-keygen -A >/dev/null
  if command -v systemctl >/dev/null 2>&1; then
    for unit in ssh sshd; do
      if systemctl -q is-enabled "$unit" 2>/dev/null; then systemctl restart "$unit"; fi
    done
  fi
fi
"""
CLOUD_INIT_WAIT = "cloud-init status --wait >/dev/null || true\n"
#: Last line of readiness: what the machine says it runs (``os=ID VERSION``), so a machine that
#: is not the image asked for is noticed (see :func:`pytest_orbstack.spec.image_matches`).
OS_REPORT = """. /etc/os-release 2>/dev/null
echo "os=${ID:-unknown} ${VERSION_CODENAME:-} ${VERSION_ID:-}"
"""
#: Before stopping a base or template for cloning: forget what must differ between machines.
GENERALIZE_SCRIPT = """
if [ -f /etc/machine-id ]; then : >/etc/machine-id; fi
if [ -f /var/lib/dbus/machine-id ] && [ ! -L /var/lib/dbus/machine-id ]; then
  rm -f /var/lib/dbus/machine-id
fi
rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub /var/lib/systemd/random-seed
sync
"""
#: How long a started machine may take to accept commands.
READY_TIMEOUT = 60.0


__all__ = [
    "CLOUD_INIT_WAIT",
    "GENERALIZE_SCRIPT",
    "OS_REPORT",
    "READY_SCRIPT",
    "READY_TIMEOUT",
    "CloneSources",
]
