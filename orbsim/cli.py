"""The ``orbsim`` command line: an ``orbctl``/``orb`` look-alike (docs/orbctl-contract.md §1-§6,
§9).

Imports are lazy: ``orbsim run -m X true`` only loads ``os``, ``sys``, ``json``, ``signal`` and
the small ``state``/``runner`` modules.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable

from .errors import ClientError, HostUnsupported, SimError

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    from typing import Any

    from .ctx import Ctx

# canonical command -> aliases
ALIASES: dict[str, tuple[str, ...]] = {
    "create": ("add", "new"),
    "list": (),
    "info": ("i",),
    "start": (),
    "stop": ("shutdown",),
    "restart": (),
    "delete": (),
    "rename": (),
    "clone": (),
    "export": (),
    "import": (),
    "run": ("exec", "shell"),
    "push": (),
    "pull": (),
    "default": ("set-default", "get-default"),
    "status": (),
    "version": (),
    "config": (),
    "logs": ("log", "console"),
    "ssh": (),
    "help": (),
    # simulator-only, hidden
    "sim-prepare": (),
    "sim-import-rootfs": (),
    "sim-gc": (),
    "doctor": (),
}
CANON: dict[str, str] = {}
for _c, _as in ALIASES.items():
    CANON[_c] = _c
    for _a in _as:
        CANON[_a] = _c
HIDDEN = {"sim-prepare", "sim-import-rootfs", "sim-gc", "doctor", "help"}
# (short, long, takes value, help)
Flag = tuple[str, str, bool, str]
FLAGS: dict[str, list[Flag]] = {
    "create": [
        ("a", "arch", True, "Override the default architecture"),
        ("p", "set-password", False, "Prompt for a password for the default user and root"),
        ("u", "user", True, "Username for the default user"),
        ("c", "user-data", True, "Path to Cloud-init user data file"),
    ],
    "list": [
        ("f", "format", True, "Output format (text, json)"),
        ("q", "quiet", False, "Only show machine names"),
        ("r", "running", False, "Only show running machines"),
    ],
    "info": [("f", "format", True, "Output format (text, json)")],
    "start": [("a", "all", False, "Start all machines")],
    "stop": [
        ("a", "all", False, "Stop all machines"),
        ("f", "force", False, "Force stop (may cause data loss)"),
    ],
    "restart": [("a", "all", False, "Restart all machines")],
    "delete": [
        ("a", "all", False, "Delete all machines"),
        ("f", "force", False, "Delete without confirmation"),
    ],
    "import": [("n", "name", True, "Name of the imported machine")],
    "push": [("m", "machine", True, "Copy to a specific machine")],
    "pull": [("m", "machine", True, "Copy from a specific machine")],
    "logs": [("a", "all", False, "Show all logs (runtime and console)")],
}
USAGE: dict[str, str] = {
    "create": "create [flags] DISTRO[:VERSION] [MACHINE_NAME]",
    "list": "list [flags]",
    "info": "info [flags] ID/NAME",
    "start": "start [flags] [ID/NAME]...",
    "stop": "stop [flags] [ID/NAME]...",
    "restart": "restart [flags] ID/NAME...",
    "delete": "delete [flags] ID/NAME...",
    "rename": "rename [flags] OLD_NAME NEW_NAME",
    "clone": "clone [flags] OLD_NAME NEW_NAME",
    "export": "export [flags] MACHINE_NAME OUTPUT_PATH",
    "import": "import [flags] INPUT_PATH",
    "run": "run [flags] -- [COMMAND]",
    "push": "push [flags] macOS-SOURCE... [Linux-DEST]",
    "pull": "pull [flags] Linux-SOURCE... [macOS-DEST]",
    "default": "default [flags] [ID/NAME]",
    "status": "status [flags]",
    "version": "version [flags]",
    "config": "config [command]",
    "logs": "logs [flags] ID/NAME",
    "ssh": "ssh [flags]",
    "sim-prepare": "sim-prepare",
    "sim-import-rootfs": "sim-import-rootfs IMAGE TARBALL",
    "sim-gc": "sim-gc",
    "doctor": "doctor",
}
SHORT: dict[str, str] = {
    "create": "Create a new machine",
    "list": "List machines",
    "info": "Get info about a machine",
    "start": "Start OrbStack or a machine",
    "stop": "Stop OrbStack or a machine",
    "restart": "Restart a machine",
    "delete": "Delete a machine",
    "rename": "Rename a machine",
    "clone": "Clone a machine",
    "export": "Export a machine to a file",
    "import": "Import a machine from a file",
    "run": "Run command on a machine",
    "push": "Copy files to Linux",
    "pull": "Copy files from Linux",
    "default": "Get or set the default machine",
    "status": "Get OrbStack status",
    "version": "Show version information",
    "config": "Change OrbStack settings",
    "logs": "Show logs for a machine",
    "ssh": "Show SSH connection details",
}
MUTATING = {"create", "start", "stop", "restart", "delete", "rename", "clone", "export", "import"}
SERVER_PREFIX = "[-32098] "


class Out:
    """stdout/stderr writers (red server errors only when stderr is a TTY)."""

    @staticmethod
    def out(text: str) -> None:
        sys.stdout.write(text)

    @staticmethod
    def err(text: str) -> None:
        sys.stderr.write(text)

    @staticmethod
    def server_error(msg: str) -> None:
        line = SERVER_PREFIX + msg
        if sys.stderr.isatty():
            line = f"\x1b[31m{line}\x1b[0m"
        sys.stderr.write(line + "\n")


def usage_text(prog: str, cmd: str) -> str:
    lines = ["Usage:", f"  {prog} {USAGE.get(cmd, cmd)}", ""]
    aliases = ALIASES.get(cmd, ())
    if aliases:
        lines += ["Aliases:", "  " + ", ".join((cmd, *aliases)), ""]
    lines.append("Flags:")
    specs: list[Flag] = list(FLAGS.get(cmd, []))
    if cmd == "run":
        specs = [
            ("m", "machine", True, "Use a specific machine"),
            ("p", "path", False, "Translate absolute macOS paths in the arguments"),
            ("s", "shell", False, "Run as a shell script"),
            ("u", "user", True, "Run as a specific user"),
            ("w", "workdir", True, "Set the working directory"),
        ]
    for short, long, val, text in [*specs, ("h", "help", False, f"help for {cmd}")]:
        left = f"  -{short}, --{long}" + (" string" if val else "")
        lines.append(f"{left:<26}{text}")
    return "\n".join(lines) + "\n"


def root_help(prog: str) -> str:
    rows = [f"  {c:<12}{SHORT[c]}" for c in ALIASES if c not in HIDDEN and c in SHORT]
    return (
        f"{prog} is the simulated OrbStack command line (orbsim).\n\n"
        f"Usage:\n  {prog} [command]\n\nAvailable Commands:\n"
        + "\n".join(rows)
        + f"\n\nFlags:\n  -h, --help   help for {prog}\n\n"
        f'Use "{prog} [command] --help" for more information about a command.\n'
    )


def parse_flags(cmd: str, argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """pflag-style parsing: flags may be interleaved with args; ``--`` ends flags."""
    specs = FLAGS.get(cmd, []) + [("h", "help", False, "")]
    by_short = {s[0]: s for s in specs}
    by_long = {s[1]: s for s in specs}
    opts: dict[str, Any] = {}
    pos: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":
            pos.extend(argv[i:])
            break
        if a.startswith("--") and len(a) > 2:
            name, eq, val = a[2:].partition("=")
            spec = by_long.get(name)
            if spec is None:
                raise ClientError(f"unknown flag: --{name}")
            if spec[2]:
                if not eq:
                    if i >= len(argv):
                        raise ClientError(f"flag needs an argument: --{name}")
                    val = argv[i]
                    i += 1
                opts[spec[1]] = val
            else:
                opts[spec[1]] = (val.lower() not in ("false", "0", "f")) if eq else True
            continue
        if a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                c = a[j]
                spec = by_short.get(c)
                if spec is None:
                    raise ClientError(f"unknown shorthand flag: '{c}' in {a}")
                if spec[2]:
                    rest = a[j + 1 :]
                    if rest.startswith("="):
                        rest = rest[1:]
                    if rest:
                        opts[spec[1]] = rest
                    else:
                        if i >= len(argv):
                            raise ClientError(f"flag needs an argument: '{c}' in -{c}")
                        opts[spec[1]] = argv[i]
                        i += 1
                    break
                opts[spec[1]] = True
                j += 1
            continue
        pos.append(a)
    return opts, pos


RUN_FLAGS = {
    "m": "machine",
    "machine": "machine",
    "u": "user",
    "user": "user",
    "w": "workdir",
    "workdir": "workdir",
    "s": "shell",
    "shell": "shell",
    "p": "path",
    "path": "path",
    "h": "help",
    "help": "help",
}
RUN_BOOL = {"shell", "path", "help"}


def parse_run_flags(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """orbctl's custom ``ParseRunFlags``: flags only before the first non-flag argument."""
    opts: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-") or a == "-":
            break
        body = a.lstrip("-")
        name, eq, val = body.partition("=")
        key = RUN_FLAGS.get(name) if name and a.count("-", 0, 2) in (1, 2) else None
        if key is None:
            raise ClientError(f"unknown flag {a}")
        i += 1
        if key in RUN_BOOL:
            opts[key] = (val.lower() not in ("false", "0")) if eq else True
            continue
        if not eq:
            if i >= len(argv):
                raise ClientError(f"missing value for flag {a}")
            val = argv[i]
            i += 1
        opts[key] = val
    return opts, argv[i:]


def check_args(pos: list[str], lo: int, hi: int | None) -> None:
    n = len(pos)
    if hi is not None and lo == hi and n != lo:
        raise ClientError(f"accepts {lo} arg(s), received {n}")
    if hi is None and n < lo:
        raise ClientError(f"requires at least {lo} arg(s), only received {n}")
    if hi is not None and lo != hi and not lo <= n <= hi:
        if lo == 0:
            raise ClientError(f"accepts at most {hi} arg(s), received {n}")
        raise ClientError(f"accepts between {lo} and {hi} arg(s), received {n}")


def si_size(n: int | None) -> str:
    if n is None:
        return ""
    if n < 1000:
        return f"{n} B"
    size = float(n)
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        size /= 1000
        if size < 1000:
            return f"{size:.1f} {unit}"
    return f"{size:.1f} EB"


def dump_json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2) + "\n"


def tabulate(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [c.ljust(widths[i] + 2) if i < len(r) - 1 else c for i, c in enumerate(r)]
        out.append("".join(cells).rstrip())
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- commands


def _ctx(prog: str, cmd: str, argv: list[str]) -> Ctx:
    from . import state as S
    from .ctx import Ctx

    return Ctx(S.sim_home(), S.cache_home(), prog, cmd, argv)


def cmd_create(ctx: Ctx, argv: list[str]) -> int:
    from . import distros

    opts, pos = parse_flags("create", argv)
    check_args(pos, 1, 2)
    arch = opts.get("arch") or distros.native_arch()
    if arch not in distros.allowed_arches():
        raise ClientError(f"invalid architecture: {arch}")
    token, version = distros.split_token(pos[0])
    info = distros.lookup(token)
    if info is None:
        raise ClientError(f"invalid distro: {token}")
    distro, latest, ci_ok, variant = info
    name = pos[1] if len(pos) > 1 else token
    password = None
    if opts.get("set-password"):
        if not sys.stdin.isatty():
            raise ClientError("read password: inappropriate ioctl for device", usage=False)
        import getpass

        password = getpass.getpass("Password: ")
    from . import machines

    machines.ensure_running_flag(ctx)
    ver = distros.resolve_version(distro, version, latest)
    user = opts.get("user") or machines.default_user()
    image = {"distro": distro, "version": ver, "arch": arch, "variant": variant}
    user_data = None
    ctx.touch(name)
    pre = f"create '{name}': "
    if not distros.valid_name(name):
        raise SimError(f"{pre}invalid machine name '{name}'")
    from . import state as S

    if S.find(S.read(ctx.home), name) is not None:
        raise SimError(f"{pre}machine already exists: '{name}'")
    if opts.get("user-data") is not None:
        if not ci_ok:
            raise SimError(f"{pre}cloud-init not supported for '{distro}'")
        image["variant"] = "cloud"
        from .cloudinit import load_user_data

        user_data = load_user_data(opts["user-data"], name)
    if not distros.version_known(distro, ver):
        raise SimError(f"{pre}make rootfs: image not found: {{{distro} {ver} {arch} {variant}}}")
    return machines.create(ctx, name, image, user, user_data, password)


def _list_rows(ctx: Ctx, running_only: bool) -> list[dict[str, Any]]:
    from . import state as S

    recs = S.visible(S.read(ctx.home))
    recs.sort(key=lambda r: r["name"])
    if running_only:
        recs = [r for r in recs if r["state"] == "running"]
    return recs


def cmd_list(ctx: Ctx, argv: list[str]) -> int:
    opts, pos = parse_flags("list", argv)
    if pos:
        raise ClientError(f'unknown command "{pos[0]}" for "{ctx.prog} list"')
    fmt = opts.get("format", "text")
    if fmt not in ("text", "json") and not opts.get("quiet"):
        raise ClientError(f"invalid format: {fmt}", usage=False)
    from .machines import ensure_running_flag, public_record

    ensure_running_flag(ctx)
    recs = _list_rows(ctx, bool(opts.get("running")))
    if opts.get("quiet"):
        Out.out("".join(r["name"] + "\n" for r in recs))
        return 0
    if fmt == "json":
        Out.out(dump_json([public_record(r) for r in recs]))
        return 0
    from .machines import disk_size

    rows = []
    if sys.stdout.isatty():
        hdr = ["NAME", "STATE", "DISTRO", "VERSION", "ARCH", "SIZE", "IP"]
        rows += [hdr, ["-" * len(h) for h in hdr]]
    for r in recs:
        img = r["image"]
        rows.append(
            [
                r["name"],
                r["state"],
                img["distro"],
                img["version"],
                img["arch"],
                si_size(disk_size(ctx.home, r)),
                (r.get("ip4") or "") if r["state"] == "running" else "",
            ]
        )
    if rows:
        Out.out(tabulate(rows))
    if not recs:
        # OrbStack prints a literal backslash-n and "orbctl" here (a raw-string quirk); nothing
        # parses this hint, so orbsim prints a real blank line and the name it was run as.
        Out.err(f'\nUse "{_display_name()} create" to create a machine.\n')
    return 0


def _display_name() -> str:
    base = os.path.basename(sys.argv[0] if sys.argv else "") or "orbctl"
    return base if base in ("orb", "orbctl", "orbsim") else "orbctl"


def cmd_info(ctx: Ctx, argv: list[str]) -> int:
    opts, pos = parse_flags("info", argv)
    check_args(pos, 1, 1)
    fmt = opts.get("format", "text")
    if fmt not in ("text", "json"):
        raise ClientError(f"invalid format: {fmt}", usage=False)
    from . import state as S
    from .machines import disk_size, ensure_running_flag, public_record

    ensure_running_flag(ctx)
    st = S.read(ctx.home)
    rec = S.find(st, pos[0])
    if rec is None:
        raise SimError(f"machine not found: '{pos[0]}'")
    ctx.touch(rec["name"])
    eff = S.effective_state(rec) or "deleting"
    size = disk_size(ctx.home, rec)
    info: dict[str, Any] = {"record": public_record(rec, eff), "disk_size": size}
    if eff == "running" and rec.get("ip4"):
        info["ip4"] = rec["ip4"]
        info["ip6"] = rec["ip6"]
    if fmt == "json":
        Out.out(dump_json(info))
        return 0
    img = rec["image"]
    lines = [
        f"ID: {rec['id']}",
        f"Name: {rec['name']}",
        f"State: {eff}",
        "",
        f"Distro: {img['distro']}",
        f"Version: {img['version']}",
        f"Architecture: {img['arch']}",
    ]
    if size is not None:
        lines.append(f"Disk usage: {si_size(size)}")
    if "ip4" in info:
        lines += [f"IPv4: {info['ip4']}", f"IPv6: {info['ip6']}"]
    if rec.get("substituted"):  # orbsim only: never substitute an image silently
        lines += ["", f"orbsim: {rec['substituted']}"]
    Out.out("\n".join(lines) + "\n")
    return 0


def _names_or_all(ctx: Ctx, opts: dict[str, Any], pos: list[str]) -> list[str]:
    from . import state as S

    if opts.get("all"):
        return [r["id"] for r in sorted(S.visible(S.read(ctx.home)), key=lambda r: r["name"])]
    return pos


def cmd_start(ctx: Ctx, argv: list[str]) -> int:
    from . import machines

    opts, pos = parse_flags("start", argv)
    machines.require_host()
    if not pos and not opts.get("all"):
        if not machines.start_orbstack(ctx):
            Out.err(
                "OrbStack is already running. Docker engine is ready to use.\n"
                "Use --all to start all machines.\n"
            )
        return 0
    machines.ensure_running_flag(ctx)
    for key in _names_or_all(ctx, opts, pos):
        machines.start_one(ctx, key)
    return 0


def _orbstack_down(ctx: Ctx) -> bool:
    from . import state as S

    if not S.read(ctx.home)["running"]:
        Out.err("OrbStack is not running\n")
        return True
    return False


def cmd_stop(ctx: Ctx, argv: list[str]) -> int:
    from . import machines

    opts, pos = parse_flags("stop", argv)
    if _orbstack_down(ctx):
        return 0
    if not pos and not opts.get("all"):
        machines.stop_all(ctx)
        return 0
    for key in _names_or_all(ctx, opts, pos):
        machines.stop_one(ctx, key)
    return 0


def cmd_restart(ctx: Ctx, argv: list[str]) -> int:
    from . import machines

    opts, pos = parse_flags("restart", argv)
    if not pos and not opts.get("all"):
        raise ClientError("no machines specified")
    if _orbstack_down(ctx):
        return 0
    for key in _names_or_all(ctx, opts, pos):
        machines.stop_one(ctx, key)
        machines.start_one(ctx, key, inject=False)
    return 0


def cmd_delete(ctx: Ctx, argv: list[str]) -> int:
    from . import machines

    opts, pos = parse_flags("delete", argv)
    if not pos and not opts.get("all"):
        raise ClientError("no machines specified")
    if sys.stdin.isatty() and not opts.get("force"):
        Out.err("Continue [y/N]? ")
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            Out.err("Aborted\n")
            return 1
    machines.ensure_running_flag(ctx)
    machines.delete(ctx, pos, bool(opts.get("all")))
    return 0


def cmd_rename(ctx: Ctx, argv: list[str]) -> int:
    from . import machines

    _, pos = parse_flags("rename", argv)
    check_args(pos, 2, 2)
    machines.ensure_running_flag(ctx)
    machines.rename(ctx, pos[0], pos[1])
    return 0


def cmd_clone(ctx: Ctx, argv: list[str]) -> int:
    from . import machines

    _, pos = parse_flags("clone", argv)
    check_args(pos, 2, 2)
    machines.ensure_running_flag(ctx)
    return machines.clone(ctx, pos[0], pos[1])


def cmd_export(ctx: Ctx, argv: list[str]) -> int:
    from pathlib import Path

    from . import machines

    _, pos = parse_flags("export", argv)
    check_args(pos, 2, 2)
    machines.require_host()
    machines.ensure_running_flag(ctx)
    machines.export(ctx, pos[0], Path(os.path.abspath(pos[1])))
    return 0


def cmd_import(ctx: Ctx, argv: list[str]) -> int:
    from pathlib import Path

    from . import machines

    opts, pos = parse_flags("import", argv)
    check_args(pos, 1, 1)
    machines.ensure_running_flag(ctx)
    machines.import_(ctx, Path(os.path.abspath(pos[0])), opts.get("name"))
    return 0


def _fault_env_set() -> bool:
    env = os.environ
    if env.get("ORBSIM_FAULTS_OFF", "") not in ("", "0", "false", "no"):
        return False
    return any(
        env.get(k) for k in ("ORBSIM_LATENCY", "ORBSIM_FAIL", "ORBSIM_HANG", "ORBSIM_PERMANENT")
    )


def cmd_run(ctx: Ctx, argv: list[str]) -> int:
    opts, rest = parse_run_flags(argv)
    if opts.get("help"):
        Out.out(usage_text(ctx.prog, "run"))
        return 0
    from .runner import NO_MACHINES_HELP, NoMachines, run

    try:
        if _fault_env_set():
            ctx.inject(opts.get("machine"))
        return run(
            ctx,
            opts.get("machine"),
            opts.get("user"),
            opts.get("workdir"),
            bool(opts.get("shell")),
            rest,
        )
    except NoMachines:
        Out.err(NO_MACHINES_HELP)
        return 1
    except SimError as exc:
        return _before_exec(ctx, exc)


def _before_exec(ctx: Ctx, exc: SimError) -> int:
    """An error of ``run``/``push``/``pull`` before the command started (unknown machine or
    user, machine not startable): the server prints it into the session only when there is a
    PTY, so without a terminal the client just exits 1 with empty stderr (contract §1)."""
    ctx.error = exc.msg
    if any(os.isatty(fd) for fd in (0, 1, 2)):
        Out.server_error(exc.msg)
    return 1


def _copy_cmd(ctx: Ctx, argv: list[str], which: str) -> int:
    opts, pos = parse_flags(which, argv)
    check_args(pos, 1, None)
    from . import runner

    try:
        if _fault_env_set():
            ctx.inject(opts.get("machine"))
        fn = runner.push if which == "push" else runner.pull
        return fn(ctx, opts.get("machine"), pos)
    except runner.NoMachines:
        raise SimError("no machines found") from None
    except SimError as exc:
        return _before_exec(ctx, exc)


def cmd_push(ctx: Ctx, argv: list[str]) -> int:
    return _copy_cmd(ctx, argv, "push")


def cmd_pull(ctx: Ctx, argv: list[str]) -> int:
    return _copy_cmd(ctx, argv, "pull")


def cmd_default(ctx: Ctx, argv: list[str]) -> int:
    from . import state as S

    _, pos = parse_flags("default", argv)
    check_args(pos, 0, 1)
    if not pos:
        with S.transaction(ctx.home) as t:
            rec = S.default_machine(t.st)
            if rec is None:
                raise SimError("no machines found")
            t.st["default"] = rec["id"]
        ctx.touch(rec["name"])
        Out.out(rec["name"] + "\n")
        return 0
    with S.transaction(ctx.home) as t:
        rec = S.find(t.st, pos[0])
        if rec is None:
            raise SimError(f"machine not found: '{pos[0]}'")
        t.st["default"] = rec["id"]
    ctx.touch(rec["name"])
    return 0


def cmd_status(ctx: Ctx, argv: list[str]) -> int:
    from . import state as S
    from .machines import host_problem

    _, pos = parse_flags("status", argv)
    check_args(pos, 0, 0)
    problem = host_problem()
    if problem:
        Out.out("Stopped\n")
        Out.err(f"orbsim: {problem}\n")
        return 1
    if S.read(ctx.home)["running"]:
        Out.out("Running\n")
        return 0
    Out.out("Stopped\n")
    return 1


def cmd_version(ctx: Ctx, argv: list[str]) -> int:
    from . import SIM_BUILD, SIM_VERSION

    _, pos = parse_flags("version", argv)
    check_args(pos, 0, 0)
    Out.out(
        f"Version: {SIM_VERSION} ({SIM_BUILD})\n"
        "Commit: 0000000000000000000000000000000000000000 (orbsim simulator, pytest-orbstack)\n"
    )
    return 0


#: The keys ``config show`` prints and their defaults (contract §2 ``config``).  Keys whose
#: default is ``None`` are printed only once set (OrbStack's ``data_dir`` is ``omitempty``).
CONFIG_DEFAULTS: dict[str, str | None] = {
    "app.start_at_login": "false",
    "cpu": "",
    "data_allow_backup": "false",
    "data_dir": None,
    "docker.node_name": "orbstack",
    "docker.set_context": "true",
    "k8s.enable": "false",
    "k8s.expose_services": "false",
    "memory_mib": "8192",
    "mount_hide_shared": "false",
    "network.https": "true",
    "network.subnet4": "192.168.138.0/23",
    "network_bridge": "true",
    "network_proxy": "auto",
    "power.pause_on_sleep": "true",
    "rosetta": "true",
    "setup.use_admin": "true",
    "ssh.expose_port": "false",
}
REBOOT_KEYS = {
    "cpu",
    "memory_mib",
    "network.subnet4",
    "network_bridge",
    "network_proxy",
    "rosetta",
    "data_dir",
}
BOOL_KEYS = {k for k, v in CONFIG_DEFAULTS.items() if v in ("true", "false")}


def _config_lines(ctx: Ctx) -> str:
    from . import state as S

    st = S.read(ctx.home)
    vals = {k: v for k, v in CONFIG_DEFAULTS.items() if v is not None}
    vals["cpu"] = str(os.cpu_count() or 1)
    vals.update({k: v for k, v in (st.get("config") or {}).items() if v not in (None, "")})
    for r in S.visible(st):
        n = r["name"]
        key = f'machine."{n}".username' if "." in n else f"machine.{n}.username"
        vals[key] = r["config"].get("default_username", "")
    return "".join(f"{k}: {vals[k]}\n" for k in sorted(vals))


def cmd_config(ctx: Ctx, argv: list[str]) -> int:
    from . import state as S

    _, pos = parse_flags("config", argv)
    if not pos:
        Out.out(usage_text(ctx.prog, "config"))
        return 0
    sub, args = pos[0], pos[1:]
    if sub == "show":
        Out.out(_config_lines(ctx))
        return 0
    if sub == "get":
        # OrbStack's ``config get`` ignores its KEY and prints the whole list, exit 0, whatever
        # the key (docs/orbctl-contract.md §2 ``config``; still to be verified on OrbStack).
        check_args(args, 1, 1)
        Out.out(_config_lines(ctx))
        return 0
    if sub == "reset":
        with S.transaction(ctx.home) as t:
            t.st["config"] = {}
        return 0
    if sub == "set":
        check_args(args, 2, 2)
        key, val = args
        if key.startswith("machine."):
            body = key[len("machine.") :]
            if body.startswith('"'):
                name, _, sub_key = body[1:].partition('".')
            else:
                name, _, sub_key = body.rpartition(".")
            if sub_key != "username":
                Out.err(f"Unknown machine config key: {sub_key}\n")
                return 1
            with S.transaction(ctx.home) as t:
                rec = S.find(t.st, name)
                if rec is None:
                    raise SimError(f"machine not found: '{name}'")
                rec["config"]["default_username"] = val
            return 0
        if key not in CONFIG_DEFAULTS:
            Out.err(f"Unknown configuration key: {key}\n")
            return 1
        if key in BOOL_KEYS and val not in ("true", "false"):
            raise ClientError(f'invalid value for {key}: "{val}" (want true or false)', usage=False)
        if key in ("cpu", "memory_mib") and not val.isdigit():
            raise ClientError(f'invalid value for {key}: "{val}"', usage=False)
        with S.transaction(ctx.home) as t:
            t.st.setdefault("config", {})[key] = val
        if key in REBOOT_KEYS:
            Out.out('Restart OrbStack with "orb stop" to apply changes.\n')
        return 0
    if sub == "docker":
        raise ClientError("config docker is not supported by the simulator", usage=False)
    raise ClientError(f'unknown command "{sub}" for "{ctx.prog} config"')


def cmd_logs(ctx: Ctx, argv: list[str]) -> int:
    from . import state as S
    from .machines import console_log

    opts, pos = parse_flags("logs", argv)
    check_args(pos, 1, 1)
    rec = S.find(S.read(ctx.home), pos[0])
    if rec is None:  # orbctl prints RPC errors of `logs` on stdout and exits 0
        Out.out(SERVER_PREFIX + f"machine not found: '{pos[0]}'\n")
        return 0
    ctx.touch(rec["name"])
    if opts.get("all"):
        from . import oplog

        Out.out("--- runtime (orbsim operation log) ---\n")
        for op in oplog.read_ops(ctx.home):
            if rec["name"] in (op.get("machines") or []):
                Out.out(f"{op.get('ts')} {op.get('cmd')} {op.get('args')} rc={op.get('rc')}\n")
        Out.out("--- console ---\n")
    with contextlib.suppress(OSError):
        Out.out(console_log(ctx.home, rec["id"]).read_text(errors="replace"))
    return 0


def cmd_ssh(ctx: Ctx, argv: list[str]) -> int:
    _, pos = parse_flags("ssh", argv)
    check_args(pos, 0, 0)
    Out.out(
        "orbsim does not run an SSH server.\n\n"
        f"Use `{ctx.prog} run -m MACHINE [-u USER] COMMAND...` to run commands in a machine,\n"
        f"and `{ctx.prog} push` / `{ctx.prog} pull` to copy files.\n"
    )
    return 0


def cmd_sim_prepare(ctx: Ctx, argv: list[str]) -> int:
    from . import machines, rootfs

    machines.require_host()
    path = rootfs.ensure_base(ctx.cache)
    _precompile()
    Out.out(str(path) + "\n")
    return 0


def _precompile() -> None:
    """Write this package's bytecode even under PYTHONDONTWRITEBYTECODE (faster CLI starts)."""
    import compileall

    with contextlib.suppress(Exception):
        compileall.compile_dir(os.path.dirname(__file__), quiet=2)


def cmd_sim_import_rootfs(ctx: Ctx, argv: list[str]) -> int:
    from pathlib import Path

    from . import distros, machines

    _, pos = parse_flags("sim-import-rootfs", argv)
    check_args(pos, 2, 2)
    token, version = distros.split_token(pos[0])
    info = distros.lookup(token)
    if info is None:
        raise ClientError(f"invalid distro: {token}")
    ver = distros.resolve_version(info[0], version, info[1])
    image = {"distro": info[0], "version": ver, "arch": distros.native_arch(), "variant": info[3]}
    dest = machines.import_rootfs(ctx, image, Path(os.path.abspath(pos[1])))
    Out.out(str(dest) + "\n")
    return 0


def cmd_sim_gc(ctx: Ctx, argv: list[str]) -> int:
    from . import net
    from . import state as S
    from .machines import reap_machine

    with S.transaction(ctx.home) as t:
        ids = list(t.st["machines"])
    for sub in ("machines", "lxc"):
        d = ctx.home / sub
        if d.is_dir():
            for m in d.iterdir():
                if m.name not in ids:
                    reap_machine(ctx.home, m.name)
    S.empty_trash(ctx.home)
    net.gc()
    return 0


def cmd_doctor(ctx: Ctx, argv: list[str]) -> int:
    from . import doctor

    _, pos = parse_flags("doctor", argv)
    check_args(pos, 0, 0)
    return doctor.main()


HANDLERS: dict[str, Callable[[Ctx, list[str]], int]] = {
    "create": cmd_create,
    "list": cmd_list,
    "info": cmd_info,
    "start": cmd_start,
    "stop": cmd_stop,
    "restart": cmd_restart,
    "delete": cmd_delete,
    "rename": cmd_rename,
    "clone": cmd_clone,
    "export": cmd_export,
    "import": cmd_import,
    "run": cmd_run,
    "push": cmd_push,
    "pull": cmd_pull,
    "default": cmd_default,
    "status": cmd_status,
    "version": cmd_version,
    "config": cmd_config,
    "logs": cmd_logs,
    "ssh": cmd_ssh,
    "sim-prepare": cmd_sim_prepare,
    "sim-import-rootfs": cmd_sim_import_rootfs,
    "sim-gc": cmd_sim_gc,
    "doctor": cmd_doctor,
}


def _term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    base = os.path.basename(sys.argv[0] if sys.argv else "orbctl")
    prog = "orb" if base == "orb" else "orbctl"
    if not args:
        if prog == "orb":
            args = ["run"]
        else:
            Out.out(root_help(prog))
            return 0
    first = args[0]
    if first in ("-h", "--help", "help"):
        if prog == "orb":
            Out.out(
                "3 ways to use orb:\n"
                "  orb                     start a shell in the default machine\n"
                "  orb COMMAND [ARGS...]   run a command in the default machine "
                "(flags: -m MACHINE -u USER -w DIR)\n"
                "  orb SUBCOMMAND ...      control machines (same as orbctl)\n"
            )
        else:
            Out.out(root_help(prog))
        return 0
    cmd = CANON.get(first)
    if cmd is None or cmd == "help":
        if prog == "orb":
            cmd, rest = "run", args
        else:
            sys.stderr.write(
                f'Error: unknown command "{first}" for "{prog}"\nRun \'{prog} --help\' for usage.\n'
            )
            return 1
    else:
        rest = args[1:]
    if cmd != "run" and ("-h" in rest or "--help" in rest):
        pre = rest[: rest.index("--")] if "--" in rest else rest
        if "-h" in pre or "--help" in pre:
            Out.out(f"{SHORT.get(cmd, cmd)}\n\n" + usage_text(prog, cmd))
            return 0
    ctx = _ctx(prog, cmd, rest)
    if cmd in MUTATING:
        import signal

        signal.signal(signal.SIGTERM, _term)
        signal.signal(signal.SIGHUP, _term)
    rc = 1
    try:
        rc = HANDLERS[cmd](ctx, rest)
    except ClientError as exc:
        sys.stderr.write(f"Error: {exc.msg}\n")
        if exc.usage:
            sys.stderr.write(usage_text(prog, cmd))
        rc = 1
    except SimError as exc:
        # OrbStack prints the server's text and nothing else; orbsim's own detail (why a
        # holder did not start, ...) goes to the operation log and the machine's console log.
        Out.server_error(exc.msg)
        ctx.error = exc.msg if not exc.detail else f"{exc.msg} ({exc.detail})"
        rc = 1
    except HostUnsupported as exc:
        Out.server_error(f"orbsim cannot run machines on this host: {exc}")
        rc = 1
    except KeyboardInterrupt:
        rc = 130
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdout.flush()
        if not ctx.logged:
            try:
                from . import oplog

                oplog.append(ctx.home, oplog.entry(ctx, rc))
            except Exception:
                pass
    return rc
