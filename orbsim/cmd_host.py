"""Handlers of the other commands: default, status, version, config, logs, ssh, and the
simulator's own sim-prepare, sim-import-rootfs, sim-gc and doctor."""

from __future__ import annotations

import contextlib
import os

from .errors import ClientError, SimError
from .output import SERVER_PREFIX, Out

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    from .ctx import Ctx
    from .flags import Opts


def cmd_default(ctx: Ctx, opts: Opts, pos: list[str]) -> int:
    from . import state as S

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


def cmd_status(ctx: Ctx, opts: Opts, pos: list[str]) -> int:
    from . import state as S
    from .host import host_problem

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


def cmd_version(ctx: Ctx, opts: Opts, pos: list[str]) -> int:
    from . import SIM_BUILD, SIM_VERSION

    Out.out(f"Version: {SIM_VERSION} ({SIM_BUILD})\nCommit: {'0' * 40} (v{SIM_VERSION})\n")
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
    from .settings import machine_lines

    st = S.read(ctx.home)
    vals = {k: v for k, v in CONFIG_DEFAULTS.items() if v is not None}
    vals["cpu"] = str(os.cpu_count() or 1)
    vals.update({k: v for k, v in (st.get("config") or {}).items() if v not in (None, "")})
    for r in S.visible(st):
        n = r["name"]
        key = f'machine."{n}".username' if "." in n else f"machine.{n}.username"
        vals[key] = r["config"].get("default_username", "")
        for sub_key, value in machine_lines(r["config"]).items():  # 2.2's limits, when set
            vals[key.rpartition(".")[0] + "." + sub_key] = value
    return "".join(f"{k}: {vals[k]}\n" for k in sorted(vals))


def cmd_config(ctx: Ctx, opts: Opts, pos: list[str]) -> int:
    from . import state as S
    from .flags import check_args
    from .helptext import usage_text

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
            from .settings import MACHINE_KEYS, parse_machine_value, split_machine_key

            name, sub_key = split_machine_key(key)

            field = MACHINE_KEYS.get(sub_key)  # OrbStack 2.2's machine.NAME.* keys (§16)
            if field is None:
                Out.err(f"Unknown machine config key: {sub_key}\n")
                return 1
            value = parse_machine_value(sub_key, val)
            with S.transaction(ctx.home) as t:
                rec = S.find(t.st, name)
                if rec is None:
                    raise SimError(f"machine not found: '{name}'")
                rec["config"][field] = value  # limits apply at the machine's next start
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


def cmd_logs(ctx: Ctx, opts: Opts, pos: list[str]) -> int:
    from . import state as S
    from .records import console_log

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


def cmd_ssh(ctx: Ctx, opts: Opts, pos: list[str]) -> int:
    Out.out(
        "orbsim does not run an SSH server.\n\n"
        f"Use `{ctx.prog} run -m MACHINE [-u USER] COMMAND...` to run commands in a machine,\n"
        f"and `{ctx.prog} push` / `{ctx.prog} pull` to copy files.\n"
    )
    return 0


def cmd_sim_prepare(ctx: Ctx, opts: Opts, pos: list[str]) -> int:
    from . import rootfs
    from .host import require_host

    require_host()
    path = rootfs.ensure_base(ctx.cache)
    _precompile()
    Out.out(str(path) + "\n")
    return 0


def _precompile() -> None:
    """Write this package's bytecode even under PYTHONDONTWRITEBYTECODE (faster CLI starts)."""
    import compileall

    with contextlib.suppress(Exception):
        compileall.compile_dir(os.path.dirname(__file__), quiet=2)


def cmd_sim_import_rootfs(ctx: Ctx, opts: Opts, pos: list[str]) -> int:
    from pathlib import Path

    from . import archive, distros

    token, version = distros.split_token(pos[0])
    info = distros.lookup(token)
    if info is None:
        raise ClientError(f"invalid distro: {token}")
    ver = distros.resolve_version(info[0], version, info[1])
    image = {"distro": info[0], "version": ver, "arch": distros.native_arch(), "variant": info[3]}
    dest = archive.import_rootfs(ctx, image, Path(os.path.abspath(pos[1])))
    Out.out(str(dest) + "\n")
    return 0


def cmd_sim_gc(ctx: Ctx, opts: Opts, pos: list[str]) -> int:
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


def cmd_doctor(ctx: Ctx, opts: Opts, pos: list[str]) -> int:
    from . import doctor

    return doctor.main()
