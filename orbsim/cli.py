"""The ``orbsim`` command line: an ``orbctl``/``orb`` look-alike (docs/orbctl-contract.md §1-§6,
§9).  Every command is one row of ``commands.COMMANDS``: :func:`main` resolves the name, prints
help, parses the flags and dispatches from it.

Imports are lazy: ``orbsim run -m X true`` only loads ``os``, ``sys``, ``json``, ``signal`` and
the small table, flag, ``state`` and ``runner`` modules.
"""

from __future__ import annotations

import os
import sys

from .errors import ClientError, HostUnsupported, SimError

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    from collections.abc import Callable

    from .commands import Command
    from .ctx import Ctx
    from .flags import Opts

    Handler = Callable[[Ctx, Opts, list[str]], int]


def _ctx(prog: str, cmd: str, argv: list[str]) -> Ctx:
    from . import state as S
    from .ctx import Ctx

    return Ctx(S.sim_home(), S.cache_home(), prog, cmd, argv)


def handler_of(command: Command) -> Handler:
    """The command's handler, imported now (only the dispatched command's module is loaded)."""
    from importlib import import_module

    assert command.handler is not None, command.name
    module, name = command.handler
    fn: Handler = getattr(import_module(f"{__package__}.{module}"), name)
    return fn


def parse(command: Command, argv: list[str]) -> tuple[Opts, list[str]]:
    """The command's flags and arguments, by its parser; its argument count checked."""
    from .flags import check_args, parse_flags, parse_run_flags

    if command.parser == "none":
        return {}, list(argv)
    if command.parser == "run":
        return parse_run_flags(command.flags, argv)
    opts, pos = parse_flags(command.flags, argv)
    if command.nargs is not None:
        check_args(pos, *command.nargs)
    return opts, pos


def _term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    from .commands import BY_NAME, CANON
    from .output import Out

    args = list(sys.argv[1:] if argv is None else argv)
    base = os.path.basename(sys.argv[0] if sys.argv else "orbctl")
    prog = "orb" if base == "orb" else "orbctl"
    if not args:
        if prog == "orb":
            args = ["run"]
        else:
            from .helptext import root_help

            Out.out(root_help(prog))
            return 0
    first = args[0]
    if first in ("-h", "--help", "help"):
        from .helptext import ORB_HELP, root_help

        Out.out(ORB_HELP if prog == "orb" else root_help(prog))
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
    command = BY_NAME[cmd]
    if command.parser != "run" and ("-h" in rest or "--help" in rest):
        pre = rest[: rest.index("--")] if "--" in rest else rest
        if "-h" in pre or "--help" in pre:
            from .helptext import command_help

            Out.out(command_help(prog, cmd))
            return 0
    ctx = _ctx(prog, cmd, rest)
    if command.mutating:
        import signal

        signal.signal(signal.SIGTERM, _term)
        signal.signal(signal.SIGHUP, _term)
    rc = 1
    try:
        opts, pos = parse(command, rest)
        rc = handler_of(command)(ctx, opts, pos)
    except ClientError as exc:
        sys.stderr.write(f"Error: {exc.msg}\n")
        if exc.usage:
            from .helptext import usage_text

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
