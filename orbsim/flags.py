"""Command-line flags: pflag-style parsing (flags interleaved with arguments, ``--`` ends them),
orbctl's own ``run`` parsing (flags only before the command) and argument counts, driven by the
flags of each command in ``commands.COMMANDS``."""

from __future__ import annotations

from .errors import ClientError

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    Opts: TypeAlias = dict[str, Any]


class Flag:
    """One flag: ``-s``/``--long``, whether it takes a value, its help line (no typing import:
    this is on the CLI's hot path)."""

    __slots__ = ("help", "long", "short", "takes_value")

    def __init__(self, short: str, long: str, takes_value: bool, help: str) -> None:
        self.short, self.long, self.takes_value, self.help = short, long, takes_value, help


HELP = Flag("h", "help", False, "")


def parse_flags(flags: tuple[Flag, ...], argv: list[str]) -> tuple[Opts, list[str]]:
    """pflag-style parsing: flags may be interleaved with args; ``--`` ends flags."""
    specs = (*flags, HELP)
    by_short = {s.short: s for s in specs if s.short}
    by_long = {s.long: s for s in specs}
    opts: Opts = {}
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
            if spec.takes_value:
                if not eq:
                    if i >= len(argv):
                        raise ClientError(f"flag needs an argument: --{name}")
                    val = argv[i]
                    i += 1
                opts[spec.long] = val
            else:
                opts[spec.long] = (val.lower() not in ("false", "0", "f")) if eq else True
            continue
        if a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                c = a[j]
                spec = by_short.get(c)
                if spec is None:
                    raise ClientError(f"unknown shorthand flag: '{c}' in {a}")
                if spec.takes_value:
                    rest = a[j + 1 :]
                    if rest.startswith("="):
                        rest = rest[1:]
                    if rest:
                        opts[spec.long] = rest
                    else:
                        if i >= len(argv):
                            raise ClientError(f"flag needs an argument: '{c}' in -{c}")
                        opts[spec.long] = argv[i]
                        i += 1
                    break
                opts[spec.long] = True
                j += 1
            continue
        pos.append(a)
    return opts, pos


def parse_run_flags(flags: tuple[Flag, ...], argv: list[str]) -> tuple[Opts, list[str]]:
    """orbctl's custom ``ParseRunFlags``: flags only before the first non-flag argument; each
    flag by its short or long name with one or two dashes."""
    names: dict[str, Flag] = {}
    for f in (*flags, HELP):
        names[f.short] = names[f.long] = f
    opts: Opts = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-") or a == "-":
            break
        body = a.lstrip("-")
        name, eq, val = body.partition("=")
        spec = names.get(name) if name and a.count("-", 0, 2) in (1, 2) else None
        if spec is None:
            raise ClientError(f"unknown flag {a}")
        i += 1
        if not spec.takes_value:
            opts[spec.long] = (val.lower() not in ("false", "0")) if eq else True
            continue
        if not eq:
            if i >= len(argv):
                raise ClientError(f"missing value for flag {a}")
            val = argv[i]
            i += 1
        opts[spec.long] = val
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
