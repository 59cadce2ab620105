"""Cloning: the run-wide sources fresh machines are cloned from, and the shell script that
prepares a machine to be cloned (generalize; the clone's check once it started is
:mod:`pytest_orbstack.readiness`).

Kept apart from :mod:`pytest_orbstack.lifecycle`, which decides *when* to clone; these are
*how*: which source is free, and what runs inside the machine (as root, one ``orbctl run``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from filelock import FileLock, Timeout

from pytest_orbstack.coordination import SharedDir
from pytest_orbstack.files import write_json


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
            write_json(self.path, data)
            return True

    def add(self, name: str) -> None:
        with self.shared.lock(f"sources-{self.origin}"):
            data = self._read()
            data["replicas"].append(name)
            write_json(self.path, data)

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


#: Where a generalized origin keeps, for its clones, the units that had failed in it (one per
#: line): a clone compares its own failed units against these (:func:`new_failures`).  It
#: travels with the origin (a reused template still has it) and readiness removes it.
ORIGIN_FAILED = "/var/lib/pytest-orbstack-origin-failed"
#: The first-boot unit generalization installs (systemd machines): it runs in a clone's first
#: boot before ``sysinit.target`` (so before every ordinary service and socket, ``ssh.service``
#: and ``ssh.socket`` included), makes the SSH host keys generalization removed, as package
#: installation makes them on a fresh machine, and removes itself.  Machine-id and random seed
#: need no unit: systemd makes them itself when it boots with an empty ``/etc/machine-id``.
FIRSTBOOT_UNIT = "pytest-orbstack-firstboot.service"

#: Before stopping a base or template for cloning: record the units failed now, forget what
#: must differ between machines, and install the first-boot unit that makes it anew.
GENERALIZE_SCRIPT = f"""
units=/etc/systemd/system
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl list-units --state=failed --plain --no-legend --no-pager --full 2>/dev/null |
    while read -r unit _; do echo "$unit"; done >{ORIGIN_FAILED}
  if [ -d /etc/ssh ] && command -v ssh-keygen >/dev/null 2>&1 && [ -w "$units" ]; then
    wants="$units/sysinit.target.wants"
    mkdir -p "$wants"
    cat >"$units/{FIRSTBOOT_UNIT}" <<UNIT
[Unit]
Description=SSH host keys of its own for a pytest-orbstack clone (first boot)
DefaultDependencies=no
After=local-fs.target
Before=sysinit.target ssh.service sshd.service ssh.socket sshd.socket

[Service]
Type=oneshot
ExecStart=$(command -v ssh-keygen) -A
ExecStartPost=$(command -v rm) -f $units/{FIRSTBOOT_UNIT} $wants/{FIRSTBOOT_UNIT}

[Install]
WantedBy=sysinit.target
UNIT
    ln -sf "../{FIRSTBOOT_UNIT}" "$wants/{FIRSTBOOT_UNIT}"
  fi
fi
if [ -f /etc/machine-id ]; then : >/etc/machine-id; fi
if [ -f /var/lib/dbus/machine-id ] && [ ! -L /var/lib/dbus/machine-id ]; then
  rm -f /var/lib/dbus/machine-id
fi
rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub /var/lib/systemd/random-seed
sync
"""

__all__ = [
    "FIRSTBOOT_UNIT",
    "GENERALIZE_SCRIPT",
    "ORIGIN_FAILED",
    "CloneSources",
]
