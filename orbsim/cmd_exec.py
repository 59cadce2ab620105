"""Handlers of the commands that act inside machines: run, push, pull."""

from __future__ import annotations

import os

from .errors import SimError
from .output import Out

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    from .ctx import Ctx
    from .flags import Opts


def _fault_env_set() -> bool:
    env = os.environ
    if env.get("ORBSIM_FAULTS_OFF", "") not in ("", "0", "false", "no"):
        return False
    return any(
        env.get(k) for k in ("ORBSIM_LATENCY", "ORBSIM_FAIL", "ORBSIM_HANG", "ORBSIM_PERMANENT")
    )


def cmd_run(ctx: Ctx, opts: Opts, pos: list[str]) -> int:
    if opts.get("help"):
        from .helptext import usage_text

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
            pos,
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


def _copy_cmd(ctx: Ctx, opts: Opts, pos: list[str], which: str) -> int:
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


def cmd_push(ctx: Ctx, opts: Opts, pos: list[str]) -> int:
    return _copy_cmd(ctx, opts, pos, "push")


def cmd_pull(ctx: Ctx, opts: Opts, pos: list[str]) -> int:
    return _copy_cmd(ctx, opts, pos, "pull")
