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

#: Readiness, as root, in one shell: an identity of its own for a clone of a generalized origin
#: where systemd did not make it (other inits), systemd's own verdict that booting is over
#: (running or degraded), and, only where the first-boot unit could not make them, SSH host
#: keys and one checked restart of the SSH server (unit names resolved, so Debian's ``sshd``
#: alias of ``ssh`` is restarted once, after a ``reset-failed``).
READY_SCRIPT = """
if [ -f /etc/machine-id ] && [ ! -s /etc/machine-id ]; then
  systemd-machine-id-setup >/dev/null 2>&1 || dbus-uuidgen >/etc/machine-id 2>/dev/null ||
    od -An -N16 -tx1 /dev/urandom | tr -d ' \\n' >/etc/machine-id
fi
systemd=
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemd=1
  timeout 120 systemctl is-system-running --wait >/dev/null 2>&1
fi
if [ -d /etc/ssh ] && command -v ssh-keygen >/dev/null 2>&1 &&
   ! ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1; then
  ssh-keygen -A >/dev/null
  if [ -n "$systemd" ]; then
    seen=
    for name in ssh.service sshd.service; do
      unit=$(systemctl show -P Id "$name" 2>/dev/null)
      case " $seen " in *" $unit "*) continue ;; esac
      seen="$seen $unit"
      [ "$(systemctl show -P LoadState "$unit" 2>/dev/null)" = loaded ] || continue
      systemctl -q is-enabled "$unit" 2>/dev/null || systemctl -q is-failed "$unit" || continue
      systemctl reset-failed "$unit" 2>/dev/null
      systemctl restart "$unit" 2>/dev/null || echo "repair-failed=$unit"
    done
  fi
fi
"""
CLOUD_INIT_WAIT = "cloud-init status --wait >/dev/null || true\n"
#: After booting (and cloud-init): the units failed, or restarting after a failure, in this
#: machine, and those its origin had failed when it was generalized (see :func:`new_failures`).
FAILED_REPORT = f"""if [ -n "$systemd" ]; then
  printf 'failed='
  systemctl list-units --state=failed,auto-restart --plain --no-legend --no-pager --full |
    while read -r unit _; do printf '%s ' "$unit"; done
  echo
  if [ -f {ORIGIN_FAILED} ]; then
    printf 'origin-failed='
    while read -r unit; do printf '%s ' "$unit"; done <{ORIGIN_FAILED}
    echo
    rm -f {ORIGIN_FAILED}
  fi
fi
"""
#: Last line of readiness: what the machine says it runs (``os=ID VERSION``), so a machine that
#: is not the image asked for is noticed (see :func:`pytest_orbstack.spec.image_matches`).
OS_REPORT = """. /etc/os-release 2>/dev/null
echo "os=${ID:-unknown} ${VERSION_CODENAME:-} ${VERSION_ID:-}"
"""


def ready_script(*, cloud_init: bool) -> str:
    """The whole readiness script: boot over, cloud-init done if the machine has user data,
    failed units reported, the OS named."""
    return READY_SCRIPT + (CLOUD_INIT_WAIT if cloud_init else "") + FAILED_REPORT + OS_REPORT


def report_value(output: str, key: str) -> str | None:
    """The value of the last ``key=...`` line of a readiness script's output."""
    found = None
    for line in output.splitlines():
        if line.startswith(f"{key}="):
            found = line[len(key) + 1 :].strip()
    return found


def new_failures(output: str) -> list[str]:
    """Units failed in a clone (per the readiness output) that its origin did not have failed,
    plus an SSH server the readiness repair could not restart.  A machine that is not a clone
    of a generalized origin reports no ``origin-failed`` line and is judged on its own."""
    failed = (report_value(output, "failed") or "").split()
    origin = report_value(output, "origin-failed")
    if origin is None:
        return []
    known = set(origin.split())
    repaired = [
        line.split("=", 1)[1] for line in output.splitlines() if line.startswith("repair-failed=")
    ]
    return sorted({unit for unit in [*failed, *repaired] if unit not in known})


#: For each unit a clone has newly failed: its status and the tail of its journal, bounded.
FAILURE_DETAIL = """for unit in "$@"; do
  echo "--- $unit"
  systemctl status --no-pager --full --lines=0 "$unit" 2>&1 | head -n 12
  journalctl --no-pager -o short-monotonic -n 15 -u "$unit" 2>&1 | tail -n 15
done
"""


#: How long a started machine may take to accept commands.
READY_TIMEOUT = 60.0


__all__ = [
    "FAILURE_DETAIL",
    "FIRSTBOOT_UNIT",
    "GENERALIZE_SCRIPT",
    "ORIGIN_FAILED",
    "READY_TIMEOUT",
    "CloneSources",
    "new_failures",
    "ready_script",
    "report_value",
]
