"""Readiness: the check a started machine passes before a test gets it, and its verdicts.

One ``orbctl run`` as root (:func:`ready_script`) gives a clone of a generalized origin an
identity of its own where systemd did not, waits for systemd (and cloud-init) to finish
booting, and reports the failed units and the OS.  :func:`check_ready` judges the report: a
clone that booted with units its origin did not have failed is not ready
(:class:`~pytest_orbstack.errors.ProvisionError` with their status and journal tail), and a
machine that is not the image asked for is noticed (warned, and recorded in the report).
"""

from __future__ import annotations

import logging
import time

from pytest_orbstack.cloning import ORIGIN_FAILED
from pytest_orbstack.errors import ProvisionError
from pytest_orbstack.machine import Machine
from pytest_orbstack.orbctl import Orbctl
from pytest_orbstack.retry import RetryPolicy, wait_for_state
from pytest_orbstack.spec import image_matches

log = logging.getLogger("pytest_orbstack")

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


def check_ready(client: Orbctl, policy: RetryPolicy, machine: Machine) -> str | None:
    """Run the readiness check in ``machine`` until it answers (``start`` returns once the
    machine runs, so this is one ``orbctl run`` unless the machine is slow to accept commands;
    the address is asked for when a test wants it, :attr:`Machine.ip`, not polled here).

    Raises :class:`ProvisionError` when the machine stopped, never answered within
    :data:`READY_TIMEOUT`, or booted with failed units its origin did not have.  Returns what
    the machine runs (``"ID VERSION"``) when it is not the image its spec asked for, else
    ``None``.
    """
    user_data = machine.spec is not None and bool(machine.spec.user_data)
    script = ready_script(cloud_init=user_data)
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        probe = client.run(machine.name, ["sh", "-c", script], user="root", workdir="", timeout=600)
        if probe.returncode == 0:
            output = probe.stdout.decode(errors="replace")
            check_units(client, machine, output)
            return other_image(machine, output)
        if time.monotonic() > deadline:
            raise ProvisionError(
                f"machine {machine.name!r} is running but cannot run commands: "
                f"{probe.stderr.decode(errors='replace').strip()}"
            )
        info = wait_for_state(client, machine.name, {"running"}, policy)
        if info is None or info.state != "running":
            state = info.state if info else "gone"
            raise ProvisionError(f"machine {machine.name!r} did not start ({state})")
        time.sleep(0.2)


def check_units(client: Orbctl, machine: Machine, output: str) -> None:
    """A clone must boot as cleanly as its origin: units failed in it that were not failed in
    the origin when it was generalized make it not ready, with their status and journal tail
    (never handed out silently with a service down)."""
    units = new_failures(output)
    if not units:
        return
    detail = client.run(
        machine.name, ["sh", "-c", FAILURE_DETAIL, "sh", *units], user="root", workdir=""
    )
    raise ProvisionError(
        f"machine {machine.name!r} booted with failed units its origin did not have: "
        f"{', '.join(units)}\n{detail.stdout.decode(errors='replace').rstrip()}"
    )


def other_image(machine: Machine, output: str) -> str | None:
    """What the machine runs when it is not the image its spec asked for (e.g. a simulator
    that had to substitute another release), warned: never silently.  ``None`` when it is."""
    lines = [line for line in output.splitlines() if line.startswith("os=")]
    if not lines or machine.spec is None:
        return None
    os_id, *versions = lines[-1][3:].split()
    if image_matches(machine.spec.image, os_id, versions):
        return None
    actual = " ".join([os_id, *versions[:1]])
    log.warning(
        "machine %s runs %s, not the image asked for (%s)", machine.name, actual, machine.spec.image
    )
    return actual


__all__ = [
    "FAILURE_DETAIL",
    "READY_TIMEOUT",
    "check_ready",
    "check_units",
    "new_failures",
    "other_image",
    "ready_script",
    "report_value",
]
