"""The honest subset of cloud-init user-data that ``create -c`` applies.

Applied, in this order, as root inside the machine right after the default user exists:

* ``groups`` (names, or ``{name: [members]}``),
* ``users`` (``default`` = the machine's default user; dicts with ``name``, ``gecos``,
  ``homedir``, ``shell``, ``uid``, ``primary_group``, ``groups``, ``sudo``, ``lock_passwd``,
  ``ssh_authorized_keys``, ``plain_text_passwd``),
* ``ssh_authorized_keys`` (for the default user),
* ``write_files`` (``path``, ``content``, ``encoding`` b64/base64/text, ``permissions``,
  ``owner``, ``append``, ``defer`` — deferred files are written after ``runcmd`` is queued,
  i.e. at the end),
* ``package_update`` / ``package_upgrade`` / ``packages`` (``apt-get``, needs the mirror),
* ``bootcmd`` and ``runcmd`` (strings run with ``sh -c``, lists run as argv), run once.

Every other key is **not applied**; it is listed in the console log (``orbsim logs NAME``) and
in ``/var/log/cloud-init-output.log`` inside the machine.  The output of everything applied
goes there too.  A ``cloud-init`` shim is installed at ``/usr/local/bin/cloud-init``: ``status``
(with or without ``--wait``) prints ``status: done`` because all of the above ran synchronously
during ``create``.  Failing ``runcmd`` entries do not fail the create (as with cloud-init).

User-data may be JSON or ``#cloud-config`` YAML; YAML needs PyYAML (imported lazily when
present), otherwise ``create`` fails with a clear error instead of pretending.
"""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SimError

if TYPE_CHECKING:
    from .ctx import Ctx

SUPPORTED = {
    "groups",
    "users",
    "ssh_authorized_keys",
    "write_files",
    "package_update",
    "package_upgrade",
    "packages",
    "bootcmd",
    "runcmd",
}
SHIM = """#!/bin/sh
# orbsim cloud-init shim: user-data was applied synchronously by `orbsim create -c`.
case "$1" in
  status) echo "status: done"; exit 0 ;;
  --version|version) echo "cloud-init 0.0-orbsim"; exit 0 ;;
  *) echo "orbsim: only 'cloud-init status' is simulated" >&2; exit 1 ;;
esac
"""


def load_user_data(path: str, name: str) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise SimError(f"create '{name}': read user data: {exc}") from None
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SimError(f"create '{name}': parse user data: {exc}") from None
    else:
        try:
            import yaml
        except ImportError:
            raise SimError(
                f"create '{name}': orbsim cannot parse YAML user-data without PyYAML "
                "(pip install pyyaml, or give the user-data as JSON)"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SimError(f"create '{name}': parse user data: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SimError(f"create '{name}': user data is not a cloud-config mapping")
    return data


def _q(s: Any) -> str:
    return shlex.quote(str(s))


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, (list, tuple)):
        return list(v)
    if isinstance(v, str):
        return [x.strip() for x in v.split(",") if x.strip()]
    return [v]


def _cmd(entry: Any) -> str:
    if isinstance(entry, (list, tuple)):
        return " ".join(_q(x) for x in entry)
    return f"sh -c {_q(entry)}"


def _user_script(u: dict[str, Any], default_user: str) -> list[str]:
    name = u.get("name")
    if not name:
        return []
    out = []
    opts = []
    if u.get("gecos"):
        opts.append(f"--comment {_q(u['gecos'])}")
    if u.get("homedir"):
        opts.append(f"--home-dir {_q(u['homedir'])}")
    if u.get("uid") is not None:
        opts.append(f"--uid {_q(u['uid'])}")
    if u.get("primary_group"):
        out.append(
            f"getent group {_q(u['primary_group'])} >/dev/null || groupadd {_q(u['primary_group'])}"
        )
        opts.append(f"--gid {_q(u['primary_group'])}")
    else:
        opts.append("--user-group")
    shell = u.get("shell") or "/bin/bash"
    out.append(
        f"id -u {_q(name)} >/dev/null 2>&1 || useradd --create-home --shell {_q(shell)} "
        + " ".join(opts)
        + f" {_q(name)}"
    )
    if u.get("shell"):
        out.append(f"usermod --shell {_q(shell)} {_q(name)}")
    for g in _as_list(u.get("groups")):
        out.append(f"getent group {_q(g)} >/dev/null || groupadd {_q(g)}")
        out.append(f"usermod -aG {_q(g)} {_q(name)}")
    sudo = u.get("sudo")
    if sudo:
        rules = sudo if isinstance(sudo, list) else [sudo]
        body = "".join(f"{name} {r}\n" for r in rules)
        out.append(
            f"printf %s {_q(body)} > /etc/sudoers.d/90-cloud-init-{name} && "
            f"chmod 0440 /etc/sudoers.d/90-cloud-init-{name}"
        )
    if u.get("plain_text_passwd"):
        out.append(f"printf '%s:%s\\n' {_q(name)} {_q(u['plain_text_passwd'])} | chpasswd")
    keys = _as_list(u.get("ssh_authorized_keys"))
    if keys:
        out.append(_keys_script(name, keys))
    return out


def _keys_script(user: str, keys: list[Any]) -> str:
    body = "".join(f"{k}\n" for k in keys)
    return (
        f'H=$(getent passwd {_q(user)} | cut -d: -f6); mkdir -p "$H/.ssh" && '
        f'printf %s {_q(body)} >> "$H/.ssh/authorized_keys" && '
        f'chmod 700 "$H/.ssh" && chmod 600 "$H/.ssh/authorized_keys" && '
        f'chown -R {_q(user)}: "$H/.ssh"'
    )


def _write_file(f: dict[str, Any]) -> list[str]:
    path = f.get("path")
    if not path:
        return []
    content = f.get("content", "")
    enc = str(f.get("encoding", "text")).lower()
    if enc in ("b64", "base64"):
        data = base64.b64decode(content)
    elif enc in ("text", "text/plain", ""):
        data = str(content).encode()
    else:
        return [f"echo 'orbsim: write_files {path}: encoding {enc} not supported' >&2"]
    b64 = base64.b64encode(data).decode()
    redir = ">>" if f.get("append") else ">"
    out = [
        f'mkdir -p "$(dirname {_q(path)})"',
        f"printf %s {_q(b64)} | base64 -d {redir} {_q(path)}",
        f"chmod {_q(f.get('permissions', '0644'))} {_q(path)}",
    ]
    if f.get("owner"):
        out.append(f"chown {_q(f['owner'])} {_q(path)}")
    return out


def build_script(data: dict[str, Any], default_user: str) -> tuple[str, list[str]]:
    lines = ["set +e", "exec >>/var/log/cloud-init-output.log 2>&1", "echo 'orbsim: user-data'"]
    ignored = sorted(k for k in data if k not in SUPPORTED)
    for k in ignored:
        lines.append(f"echo {_q(f'orbsim: user-data key {k!r} is NOT applied by the simulator')}")
    for entry in _as_list(data.get("bootcmd")):
        lines.append(_cmd(entry))
    for g in _as_list(data.get("groups")):
        if isinstance(g, dict):
            for gname, members in g.items():
                lines.append(f"getent group {_q(gname)} >/dev/null || groupadd {_q(gname)}")
                for m in _as_list(members):
                    lines.append(f"usermod -aG {_q(gname)} {_q(m)}")
        else:
            lines.append(f"getent group {_q(g)} >/dev/null || groupadd {_q(g)}")
    for u in data.get("users") or []:
        if u == "default":
            continue
        if isinstance(u, str):
            u = {"name": u}
        if isinstance(u, dict):
            lines.extend(_user_script(u, default_user))
    keys = _as_list(data.get("ssh_authorized_keys"))
    if keys and default_user != "root":
        lines.append(_keys_script(default_user, keys))
    deferred: list[str] = []
    for f in data.get("write_files") or []:
        if isinstance(f, dict):
            (deferred if f.get("defer") else lines).extend(_write_file(f))
    pkgs = [
        str(p) if not isinstance(p, list) else "=".join(map(str, p))
        for p in _as_list(data.get("packages"))
    ]
    if data.get("package_update") or data.get("package_upgrade") or pkgs:
        lines.append("DEBIAN_FRONTEND=noninteractive apt-get update")
    if data.get("package_upgrade"):
        lines.append("DEBIAN_FRONTEND=noninteractive apt-get -y upgrade")
    if pkgs:
        lines.append(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y " + " ".join(_q(p) for p in pkgs)
        )
    for entry in _as_list(data.get("runcmd")) if not isinstance(data.get("runcmd"), str) else []:
        lines.append(_cmd(entry))
    lines.extend(deferred)
    lines.append("echo 'orbsim: user-data done'")
    return "\n".join(lines) + "\n", ignored


def apply_user_data(
    ctx: Ctx,
    rec: dict[str, Any],
    default_user: str,
    data: dict[str, Any],
    *,
    note: Callable[[Path, str, str], None],
    guest_root_sh: Callable[..., Any],
) -> None:
    """Run ``data``'s script in the machine as root (``guest_root_sh``, from the runtime) and
    write what was and was not applied to its console log (``note``)."""
    _note = note
    script, ignored = build_script(data, default_user)
    for k in ignored:
        _note(ctx.home, rec["id"], f"cloud-init: key {k!r} is not applied by orbsim")
    shim = base64.b64encode(SHIM.encode()).decode()
    guest_root_sh(
        ctx.home,
        rec,
        f"printf %s {_q(shim)} | base64 -d > /usr/local/bin/cloud-init && "
        "chmod 755 /usr/local/bin/cloud-init",
    )
    res = guest_root_sh(ctx.home, rec, script, timeout=1800)
    _note(ctx.home, rec["id"], f"cloud-init: user-data applied (exit {res.returncode})")
