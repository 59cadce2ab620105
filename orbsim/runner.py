"""``run`` / ``push`` / ``pull``: executing things inside machines as their users.

This module is on the CLI's hot path (``orbsim run -m X true``): it imports only ``os``,
``json`` (via ``state``) and ``signal``; the heavy lifecycle module is imported only when the
machine has to be started first.

How a command is run: ``lxc-attach -P $ORBSIM_HOME/lxc -n <id> --keep-env`` enters the machine
(all its namespaces, its cgroup, its capability bounding set and seccomp filter) with exactly
the clean environment orbsim built (never the caller's), then, unless the user is root, the
guest's own ``setpriv --reuid --regid --init-groups`` drops to the user, and the user's login
shell runs a tiny wrapper that changes to the working directory (falling back to ``/`` when it
does not exist or is not accessible) and ``exec``s the argv (no shell interpretation of the
arguments; ``-s`` runs them as a script). The environment is a clean login-like one (HOME,
USER, LOGNAME, SHELL, PATH) plus TERM*, COLORTERM, DISPLAY, DOCKER_*, proxy variables and the
variables named in ``ORBENV``. stdin/stdout/stderr are inherited, the exit code is passed
through (128+N for a signal).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

from . import state as S
from .errors import SimError

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    from typing import Any

    from .ctx import Ctx

ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Ubuntu's /etc/environment PATH (what most OrbStack users see), without /snap/bin
USER_PATH = (
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games:/usr/local/games"
)
WRAP_EXEC = 'cd -- "$1" 2>/dev/null || cd /; shift; exec "$@"'
WRAP_SCRIPT = 'cd -- "$1" 2>/dev/null || cd /; shift; eval "$1"'
WRAP_LOGIN = 'cd -- "$1" 2>/dev/null || cd /; exec "$SHELL" -l'
FORWARD = ("COLORTERM", "DISPLAY")
PROXY = ("http_proxy", "https_proxy", "no_proxy", "ftp_proxy", "all_proxy")
NO_MACHINES_HELP = (
    "To use Docker:\n  docker run ...\n"
    "See https://go.orbstack.dev/docker for more info.\n\n"
    "To create a Linux machine:\n  orb create ubuntu\n"
)


class NoMachines(Exception):
    pass


def running_machine(ctx: Ctx, key: str | None, *, cmd: str) -> S.Record:
    """The machine to run in, started if needed (``run`` auto-starts stopped machines)."""
    st = S.read(ctx.home)
    rec = S.find(st, key) if key else S.default_machine(st)
    if rec is None:
        if key:
            raise SimError(f"machine not found: '{key}'")
        raise NoMachines()
    ctx.touch(rec["name"])
    eff = S.effective_state(rec)
    if st["running"] and eff == "running":
        return rec
    if eff == "creating":
        raise SimError("cannot transition from creating to starting")
    from . import machines
    from .host import require_host

    require_host()
    machines.ensure_running_flag(ctx)
    if eff != "running":
        machines.start_one(ctx, rec["id"], inject=False)
    st = S.read(ctx.home)
    fresh = st["machines"].get(rec["id"])
    if fresh is None or S.effective_state(fresh) != "running":
        raise SimError(f"machine did not start: {rec['name']}")
    return fresh  # type: ignore[no-any-return]


def passwd_entry(pid: int, user: str) -> tuple[int, int, str, str] | None:
    """(uid, gid, home, shell) from the machine's /etc/passwd."""
    try:
        with open(f"/proc/{pid}/root/etc/passwd") as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 7 and (parts[0] == user or (user.isdigit() and parts[2] == user)):
                    return int(parts[2]), int(parts[3]), parts[5] or "/", parts[6] or "/bin/sh"
    except OSError:
        return None
    return None


def login_env(user: str, uid: int, home: str, shell: str) -> dict[str, str]:
    env = {
        "HOME": home,
        "USER": user,
        "LOGNAME": user,
        "SHELL": shell,
        "PATH": ROOT_PATH if uid == 0 else USER_PATH,
    }
    for k, v in os.environ.items():
        if k.startswith(("TERM", "DOCKER_")) or k in FORWARD or k.lower() in PROXY:
            env[k] = v
    for k in os.environ.get("ORBENV", "").split(":"):
        if k and k in os.environ:
            env[k] = os.environ[k]
    return env


def attach_prefix(home: Path, mid: str) -> list[str]:
    return [_lxc_attach(), "-P", str(home / "lxc"), "-n", mid, "--keep-env", "--"]


def user_argv(
    home_dir: Path,
    rec: S.Record,
    user: str,
    workdir: str | None,
    argv: list[str],
    *,
    script: bool = False,
) -> tuple[list[str], dict[str, str]]:
    pid = rec["holder"]["pid"]
    ent = passwd_entry(pid, user)
    if ent is None:
        raise SimError(f"unable to find user {user}: no matching entries in passwd file")
    uid, gid, home, shell = ent
    root = f"/proc/{pid}/root"
    if not os.path.exists(root + shell):
        shell = "/bin/sh"
    wd = workdir if workdir else home
    if not argv:
        inner = [shell, "-c", WRAP_LOGIN, shell, wd]
    elif script:
        inner = [shell, "-c", WRAP_SCRIPT, shell, wd, " ".join(argv)]
    else:
        inner = [shell, "-c", WRAP_EXEC, shell, wd, *argv]
    if uid != 0:
        inner = [
            "/usr/bin/setpriv",
            f"--reuid={uid}",
            f"--regid={gid}",
            "--init-groups",
            "--",
            *inner,
        ]
    full = [*attach_prefix(home_dir, rec["id"]), *inner]
    return full, login_env(user if not user.isdigit() else str(uid), uid, home, shell)


_LXC_ATTACH: str | None = None


def _lxc_attach() -> str:
    global _LXC_ATTACH
    if _LXC_ATTACH is None:
        for d in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
            if os.access(f"{d}/lxc-attach", os.X_OK):
                _LXC_ATTACH = f"{d}/lxc-attach"
                break
        else:
            import shutil

            _LXC_ATTACH = shutil.which("lxc-attach") or "lxc-attach"
    return _LXC_ATTACH


def spawn_wait(argv: list[str], env: dict[str, str], stdin_fd: int | None = None) -> int:
    """posix_spawn ``argv`` with inherited stdio (or ``stdin_fd``) and wait; forward SIGTERM."""
    kwargs: dict[str, Any] = {"setsigdef": (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE)}
    if stdin_fd is not None:
        kwargs["file_actions"] = [(os.POSIX_SPAWN_DUP2, stdin_fd, 0)]
    pid = os.posix_spawn(argv[0], argv, env, **kwargs)

    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)}
    old[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def run(
    ctx: Ctx,
    machine: str | None,
    user: str | None,
    workdir: str | None,
    script: bool,
    argv: list[str],
) -> int:
    rec = running_machine(ctx, machine, cmd="run")
    user = user or rec["config"].get("default_username") or "root"
    full, env = user_argv(ctx.home, rec, user, workdir, argv, script=script)
    sys.stdout.flush()
    return spawn_wait(full, env)


# ---------------------------------------------------------------- push / pull


def _guest_home(rec: S.Record) -> tuple[str, int, int, str]:
    pid = rec["holder"]["pid"]
    user = rec["config"].get("default_username") or "root"
    ent = passwd_entry(pid, user)
    if ent is None:
        raise SimError(f"unable to find user {user}: no matching entries in passwd file")
    return user, ent[0], ent[1], ent[2]


def _staging(rec: S.Record, uid: int, gid: int, kind: str) -> tuple[str, Path]:
    import secrets

    guest = f"/tmp/.orbsim-{kind}-{secrets.token_hex(6)}"
    host = Path(f"/proc/{rec['holder']['pid']}/root{guest}")
    host.mkdir(mode=0o700)
    os.chown(host, uid, gid)
    return guest, host


def _guest_path(arg: str) -> str:
    if arg == "~":
        return "."
    if arg.startswith("~/"):
        return arg[2:] or "."
    return arg


def push(ctx: Ctx, machine: str | None, args: list[str]) -> int:
    import shutil
    import subprocess

    srcs, dest = (args, ".") if len(args) == 1 else (args[:-1], args[-1])
    rec = running_machine(ctx, machine, cmd="push")
    user, uid, gid, home = _guest_home(rec)
    guest_stage, host_stage = _staging(rec, uid, gid, "push")
    rc = 0
    try:
        staged: list[str] = []
        for i, src in enumerate(srcs):
            hp = Path(src) if os.path.isabs(src) else Path(os.getcwd()) / src
            if not os.path.lexists(hp):
                sys.stderr.write(f"cp: cannot stat '{hp}': No such file or directory\n")
                rc = 1
                continue
            base = hp.name or "root"
            slot = host_stage / str(i)
            slot.mkdir()
            res = subprocess.run(
                ["cp", "-a", "--no-preserve=ownership", "--", str(hp), str(slot / base)],
                stdin=subprocess.DEVNULL,
            )
            if res.returncode != 0:
                rc = res.returncode
                continue
            for dirpath, dirnames, filenames in os.walk(slot):
                os.lchown(dirpath, uid, gid)
                for n in dirnames + filenames:
                    os.lchown(os.path.join(dirpath, n), uid, gid)
            staged.append(f"{guest_stage}/{i}/{base}")
        if staged:
            full, env = user_argv(
                ctx.home, rec, user, home, ["cp", "-rf", *staged, _guest_path(dest)]
            )
            sys.stdout.flush()
            code = spawn_wait(full, env, stdin_fd=os.open(os.devnull, os.O_RDONLY))
            rc = code or rc
    finally:
        shutil.rmtree(host_stage, ignore_errors=True)
    return rc


def pull(ctx: Ctx, machine: str | None, args: list[str]) -> int:
    import shutil
    import subprocess

    srcs, dest = (args, ".") if len(args) == 1 else (args[:-1], args[-1])
    rec = running_machine(ctx, machine, cmd="pull")
    user, uid, gid, home = _guest_home(rec)
    guest_stage, host_stage = _staging(rec, uid, gid, "pull")
    try:
        full, env = user_argv(
            ctx.home,
            rec,
            user,
            home,
            ["cp", "-rf", *[_guest_path(s) for s in srcs], guest_stage + "/"],
        )
        sys.stdout.flush()
        rc = spawn_wait(full, env, stdin_fd=os.open(os.devnull, os.O_RDONLY))
        names: list[str] = []
        for s in srcs:
            n = os.path.basename(s.rstrip("/")) or s
            if n not in names and os.path.lexists(host_stage / n):
                names.append(n)
        if names:
            hdest = dest if os.path.isabs(dest) else os.path.join(os.getcwd(), dest)
            res = subprocess.run(
                [
                    "cp",
                    "-rf",
                    "--no-preserve=ownership",
                    *[str(host_stage / n) for n in names],
                    hdest,
                ],
                stdin=subprocess.DEVNULL,
            )
            rc = rc or res.returncode
    finally:
        shutil.rmtree(host_stage, ignore_errors=True)
    return rc
