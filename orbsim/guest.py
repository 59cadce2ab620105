"""Inside a machine, as root: its identity files (hostname, hosts, resolver, machine-id) written
into its upper layer while it is stopped, the default user's setup (:data:`PROVISION`), and
running root shell scripts in a running machine."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from . import lxc
from . import state as S

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    import subprocess

ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _layered(rel: str, upper: Path, lower: Path) -> Path | None:
    """The file the machine sees at ``rel`` (upper layer first), when it is a regular file."""
    for layer in (upper, lower):
        p = layer / rel
        if p.is_symlink():
            return None
        if p.exists():
            return p
    return None


def hosts_text(current: str, name: str) -> str:
    lines = [ln for ln in current.splitlines() if not ln.rstrip().endswith("# orbsim")]
    if not any(ln.split()[:1] == ["127.0.0.1"] for ln in lines if ln.strip()):
        lines.insert(0, "127.0.0.1\tlocalhost")
    if not any("ip6-localhost" in ln for ln in lines):
        lines.append("::1\t\tlocalhost ip6-localhost ip6-loopback")
    lines.append(f"127.0.1.1\t{name}.orb.local {name} # orbsim")
    return "\n".join(lines) + "\n"


def new_machine_id() -> str:
    return os.urandom(16).hex() + "\n"


def write_identity(upper: Path, lower: Path, name: str, dns: str | None) -> None:
    """Hostname, /etc/hosts line, resolver and (if it has none yet) a machine-id of its own,
    written into the machine's upper layer while it is stopped."""
    etc = upper / "etc"
    if not etc.is_dir():
        etc.mkdir(parents=True)
        with contextlib.suppress(OSError):
            st = (lower / "etc").stat()
            os.chmod(etc, st.st_mode & 0o7777)
    (etc / "hostname").unlink(missing_ok=True)
    (etc / "hostname").write_text(name + "\n")
    src = _layered("etc/hosts", upper, lower)
    cur = src.read_text(errors="replace") if src else ""
    if (etc / "hosts").is_symlink():
        (etc / "hosts").unlink()
    (etc / "hosts").write_text(hosts_text(cur, name))
    if dns:
        resolv = etc / "resolv.conf"
        if resolv.is_symlink() or resolv.exists():
            resolv.unlink()
        resolv.write_text(f"# orbsim's DNS on its bridge\nnameserver {dns}\nsearch orb.local\n")
    mid_file = etc / "machine-id"
    try:
        have = mid_file.read_text().strip() if not mid_file.is_symlink() else ""
    except OSError:
        have = ""
    if len(have) != 32:
        if mid_file.is_symlink() or mid_file.exists():
            mid_file.unlink()
        mid_file.write_text(new_machine_id())
        mid_file.chmod(0o444)


def reset_identity(upper: Path) -> None:
    """A clone (or an imported machine) is a new machine: new machine-id, no random seed,
    no dbus id; the hostname is rewritten at its first start."""
    etc = upper / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    mid_file = etc / "machine-id"
    if mid_file.is_symlink() or mid_file.exists():
        mid_file.unlink()
    mid_file.write_text(new_machine_id())
    mid_file.chmod(0o444)
    for rel in ("var/lib/dbus/machine-id", "var/lib/systemd/random-seed"):
        p = upper / rel
        if p.is_symlink() or p.exists():
            p.unlink()


def has_init(upper: Path, lower: Path) -> bool:
    return any(os.path.lexists(layer / "sbin/init") for layer in (upper, lower))


NO_INIT = (
    "#!/bin/sh\n# orbsim: this root filesystem has no /sbin/init\n"
    "trap 'exit 0' PWR TERM INT\nwhile :; do sleep 3600 & wait $!; done\n"
)


def _root_env() -> dict[str, str]:
    env = {"PATH": ROOT_PATH, "HOME": "/root", "USER": "root", "LOGNAME": "root", "LANG": "C.UTF-8"}
    env["DEBIAN_FRONTEND"] = "noninteractive"
    return env


def guest_root_popen(home: Path, mid: str, script: str, *args: str) -> subprocess.Popen[bytes]:
    """Start a shell script as root in a running machine (empty stdin, output captured)."""
    import subprocess

    return subprocess.Popen(
        lxc.attach_argv(home, mid, ["/bin/sh", "-c", script, "sh", *args]),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_root_env(),
    )


def finish(proc: subprocess.Popen[bytes], timeout: float) -> subprocess.CompletedProcess[bytes]:
    """Wait for a :func:`guest_root_popen` process (killed after ``timeout``) and its output."""
    import subprocess

    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def guest_root_sh(
    home: Path,
    rec: S.Record,
    script: str,
    *args: str,
    stdin: bytes | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[bytes]:
    """Run a shell script as root in a running machine, capturing its output."""
    import subprocess

    return subprocess.run(
        lxc.attach_argv(home, rec["id"], ["/bin/sh", "-c", script, "sh", *args]),
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=_root_env(),
        timeout=timeout,
    )


def default_user() -> str:
    import pwd
    import re

    env = os.environ.get("ORBSIM_DEFAULT_USER")
    if env:
        return env
    names = [
        os.environ.get("SUDO_USER", ""),
        os.environ.get("USER", ""),
        os.environ.get("LOGNAME", ""),
    ]
    with contextlib.suppress(KeyError):
        names.append(pwd.getpwuid(os.getuid()).pw_name)
    for n in names:
        if n and n != "root" and re.match(r"^[a-z_][a-z0-9_-]{0,31}$", n):
            return n
    return "orbuser"


# Mirrors OrbStack's agent InitialSetup (scon/agent/setup.go): bash (else sh) from /etc/shells,
# a user with its own group and a home, membership of the admin groups that exist, the
# sudoers.d/orbstack line (written without a trailing newline, as OrbStack does, mode 0440) and
# /mnt/linux.  Unlike OrbStack the uid is the first free one from 1000 (not the macOS uid).
# Written for few processes (it runs while systemd boots): /etc/shells is read by the shell,
# one getent finds the groups, a new user gets them from useradd itself.
PROVISION = r"""
set -e
U="$1"
SH=""
if [ -r /etc/shells ]; then
  while IFS= read -r l || [ -n "$l" ]; do
    case "$l" in */bash) SH="$l"; break ;; esac
  done < /etc/shells
  if [ -z "$SH" ]; then
    while IFS= read -r l || [ -n "$l" ]; do
      case "$l" in */sh) SH="$l"; break ;; esac
    done < /etc/shells
  fi
fi
[ -n "$SH" ] || SH=/bin/sh
if [ "$U" != root ]; then
  G=""
  for e in $(getent group adm wheel staff admin sudo video || true); do
    G="$G${G:+,}${e%%:*}"
  done
  if ! id -u "$U" >/dev/null 2>&1; then
    if [ -n "$G" ]; then
      useradd --create-home --shell "$SH" --user-group --groups "$G" "$U"
    else
      useradd --create-home --shell "$SH" --user-group "$U"
    fi
  elif [ -n "$G" ]; then
    usermod -aG "$G" "$U"
  fi
  [ -d /etc/sudoers.d ] || mkdir -p /etc/sudoers.d
  if [ -e /etc/sudoers.d/orbstack ]; then
    printf '%s ALL=(ALL) NOPASSWD:ALL' "$U" > /etc/sudoers.d/orbstack
    chmod 0440 /etc/sudoers.d/orbstack
  else
    umask 0337
    printf '%s ALL=(ALL) NOPASSWD:ALL' "$U" > /etc/sudoers.d/orbstack
  fi
fi
[ -e /mnt/linux ] || ln -s / /mnt/linux 2>/dev/null || true
"""
