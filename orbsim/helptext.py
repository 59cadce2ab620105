"""Help texts, from the command table (``commands.COMMANDS``)."""

from __future__ import annotations

from .commands import BY_NAME, COMMANDS
from .flags import Flag


def usage_text(prog: str, cmd: str) -> str:
    c = BY_NAME[cmd]
    lines = ["Usage:", f"  {prog} {c.usage}", ""]
    if c.aliases:
        lines += ["Aliases:", "  " + ", ".join((cmd, *c.aliases)), ""]
    lines.append("Flags:")
    for f in (*c.flags, Flag("h", "help", False, f"help for {cmd}")):
        left = (f"  -{f.short}, --{f.long}" if f.short else f"      --{f.long}") + (
            " string" if f.takes_value else ""
        )
        lines.append(f"{left:<26}{f.help}")
    return "\n".join(lines) + "\n"


def command_help(prog: str, cmd: str) -> str:
    """``CMD --help``: the help line, then the usage."""
    return f"{BY_NAME[cmd].short or cmd}\n\n" + usage_text(prog, cmd)


def root_help(prog: str) -> str:
    rows = [f"  {c.name:<12}{c.short}" for c in COMMANDS if not c.hidden]
    return (
        f"{prog} is the simulated OrbStack command line (orbsim).\n\n"
        f"Usage:\n  {prog} [command]\n\nAvailable Commands:\n"
        + "\n".join(rows)
        + f"\n\nFlags:\n  -h, --help   help for {prog}\n\n"
        f'Use "{prog} [command] --help" for more information about a command.\n'
    )


ORB_HELP = (
    "3 ways to use orb:\n"
    "  orb                     start a shell in the default machine\n"
    "  orb COMMAND [ARGS...]   run a command in the default machine "
    "(flags: -m MACHINE -u USER -w DIR)\n"
    "  orb SUBCOMMAND ...      control machines (same as orbctl)\n"
)
