"""The ``orbsim`` command table: every command once, with its aliases, usage line, help line,
flags, argument count and handler.  Parsing (``flags``), help (``helptext``) and dispatch
(``cli.main``) all come from it.

**To add a command**: one :class:`Command` row (its handler ``(ctx, opts, pos) -> int`` in a
``cmd_*`` module).  **To add a flag**: one :class:`~orbsim.flags.Flag` in the command's
``flags``; the handler reads it from ``opts`` by its long name (``opts.get("cpus")``); help
shows it.  Handlers are named by module and function and imported only when dispatched, so
``orbsim run`` imports nothing of ``create``.
"""

from __future__ import annotations

from .flags import Flag

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    from typing import Literal, TypeAlias

    #: ``pflag``: cobra/pflag rules (flags anywhere, ``--`` ends them); ``run``: orbctl's own
    #: ``run`` parser (flags only before the command); ``none``: arguments passed unparsed.
    Parser: TypeAlias = Literal["pflag", "run", "none"]


class Command:
    """One command of the table (see the module docstring)."""

    __slots__ = (
        "aliases",
        "flags",
        "handler",
        "hidden",
        "mutating",
        "nargs",
        "name",
        "parser",
        "short",
        "usage",
    )

    def __init__(
        self,
        name: str,
        usage: str,
        short: str,
        handler: tuple[str, str] | None,
        *,
        aliases: tuple[str, ...] = (),
        flags: tuple[Flag, ...] = (),
        nargs: tuple[int, int | None] | None = None,
        hidden: bool = False,
        mutating: bool = False,
        parser: Parser = "pflag",
    ) -> None:
        self.name = name
        self.usage = usage  # after the program name: "create [flags] DISTRO[:VERSION] [NAME]"
        self.short = short  # the help line ("" for hidden commands)
        self.handler = handler  # (module in orbsim, function); None: handled by cli.main
        self.aliases = aliases
        self.flags = flags
        self.nargs = nargs  # (at least, at most or None); None: the handler checks
        self.hidden = hidden  # not in the root help (simulator-only commands)
        self.mutating = mutating  # SIGTERM/SIGHUP end it through its cleanup
        self.parser = parser


M, E, H = "cmd_machines", "cmd_exec", "cmd_host"
FORMAT = Flag("f", "format", True, "Output format (text, json)")


def _all(verb: str) -> Flag:
    return Flag("a", "all", False, f"{verb} all machines")


COMMANDS: tuple[Command, ...] = (
    Command(
        "create",
        "create [flags] DISTRO[:VERSION] [MACHINE_NAME]",
        "Create a new machine",
        (M, "cmd_create"),
        aliases=("add", "new"),
        flags=(
            Flag("a", "arch", True, "Override the default architecture"),
            Flag("p", "set-password", False, "Prompt for a password for the default user and root"),
            Flag("u", "user", True, "Username for the default user"),
            Flag("c", "user-data", True, "Path to Cloud-init user data file"),
            # OrbStack 2.1-2.2's per-machine settings (docs/orbctl-contract.md §16 [3P];
            # what they do in orbsim: orbsim/settings.py)
            Flag("", "cpus", True, "CPU limit (cores)"),
            Flag("", "memory", True, "Memory limit (e.g. 4G, 512M)"),
            Flag("", "disk", True, "Disk size limit (e.g. 64G)"),
            Flag("", "isolated", False, "Isolate the machine from macOS"),
            Flag("", "isolate-network", False, "Isolate the machine's network"),
            Flag("", "forward-ssh-agent", False, "Forward the macOS SSH agent"),
            Flag("", "mount", True, "Mount a macOS directory SRC[:DEST] (with --isolated)"),
        ),
        nargs=(1, 2),
        mutating=True,
    ),
    Command(
        "list",
        "list [flags]",
        "List machines",
        (M, "cmd_list"),
        flags=(
            FORMAT,
            Flag("q", "quiet", False, "Only show machine names"),
            Flag("r", "running", False, "Only show running machines"),
        ),
    ),
    Command(
        "info",
        "info [flags] ID/NAME",
        "Get info about a machine",
        (M, "cmd_info"),
        aliases=("i",),
        flags=(FORMAT,),
        nargs=(1, 1),
    ),
    Command(
        "start",
        "start [flags] [ID/NAME]...",
        "Start OrbStack or a machine",
        (M, "cmd_start"),
        flags=(_all("Start"),),
        mutating=True,
    ),
    Command(
        "stop",
        "stop [flags] [ID/NAME]...",
        "Stop OrbStack or a machine",
        (M, "cmd_stop"),
        aliases=("shutdown",),
        flags=(_all("Stop"), Flag("f", "force", False, "Force stop (may cause data loss)")),
        mutating=True,
    ),
    Command(
        "restart",
        "restart [flags] ID/NAME...",
        "Restart a machine",
        (M, "cmd_restart"),
        flags=(_all("Restart"),),
        mutating=True,
    ),
    Command(
        "delete",
        "delete [flags] ID/NAME...",
        "Delete a machine",
        (M, "cmd_delete"),
        flags=(_all("Delete"), Flag("f", "force", False, "Delete without confirmation")),
        mutating=True,
    ),
    Command(
        "rename",
        "rename [flags] OLD_NAME NEW_NAME",
        "Rename a machine",
        (M, "cmd_rename"),
        nargs=(2, 2),
        mutating=True,
    ),
    Command(
        "clone",
        "clone [flags] OLD_NAME NEW_NAME",
        "Clone a machine",
        (M, "cmd_clone"),
        nargs=(2, 2),
        mutating=True,
    ),
    Command(
        "export",
        "export [flags] MACHINE_NAME OUTPUT_PATH",
        "Export a machine to a file",
        (M, "cmd_export"),
        nargs=(2, 2),
        mutating=True,
    ),
    Command(
        "import",
        "import [flags] INPUT_PATH",
        "Import a machine from a file",
        (M, "cmd_import"),
        flags=(Flag("n", "name", True, "Name of the imported machine"),),
        nargs=(1, 1),
        mutating=True,
    ),
    Command(
        "run",
        "run [flags] -- [COMMAND]",
        "Run command on a machine",
        (E, "cmd_run"),
        aliases=("exec", "shell"),
        flags=(
            Flag("m", "machine", True, "Use a specific machine"),
            Flag("p", "path", False, "Translate absolute macOS paths in the arguments"),
            Flag("s", "shell", False, "Run as a shell script"),
            Flag("u", "user", True, "Run as a specific user"),
            Flag("w", "workdir", True, "Set the working directory"),
        ),
        parser="run",
    ),
    Command(
        "push",
        "push [flags] macOS-SOURCE... [Linux-DEST]",
        "Copy files to Linux",
        (E, "cmd_push"),
        flags=(Flag("m", "machine", True, "Copy to a specific machine"),),
        nargs=(1, None),
    ),
    Command(
        "pull",
        "pull [flags] Linux-SOURCE... [macOS-DEST]",
        "Copy files from Linux",
        (E, "cmd_pull"),
        flags=(Flag("m", "machine", True, "Copy from a specific machine"),),
        nargs=(1, None),
    ),
    Command(
        "default",
        "default [flags] [ID/NAME]",
        "Get or set the default machine",
        (H, "cmd_default"),
        aliases=("set-default", "get-default"),
        nargs=(0, 1),
    ),
    Command("status", "status [flags]", "Get OrbStack status", (H, "cmd_status"), nargs=(0, 0)),
    Command(
        "version", "version [flags]", "Show version information", (H, "cmd_version"), nargs=(0, 0)
    ),
    Command("config", "config [command]", "Change OrbStack settings", (H, "cmd_config")),
    Command(
        "logs",
        "logs [flags] ID/NAME",
        "Show logs for a machine",
        (H, "cmd_logs"),
        aliases=("log", "console"),
        flags=(Flag("a", "all", False, "Show all logs (runtime and console)"),),
        nargs=(1, 1),
    ),
    Command("ssh", "ssh [flags]", "Show SSH connection details", (H, "cmd_ssh"), nargs=(0, 0)),
    Command("help", "help", "", None, hidden=True),
    # simulator-only, hidden
    Command("sim-prepare", "sim-prepare", "", (H, "cmd_sim_prepare"), hidden=True, parser="none"),
    Command(
        "sim-import-rootfs",
        "sim-import-rootfs IMAGE TARBALL",
        "",
        (H, "cmd_sim_import_rootfs"),
        nargs=(2, 2),
        hidden=True,
    ),
    Command("sim-gc", "sim-gc", "", (H, "cmd_sim_gc"), hidden=True, parser="none"),
    Command("doctor", "doctor", "", (H, "cmd_doctor"), nargs=(0, 0), hidden=True),
)
BY_NAME: dict[str, Command] = {c.name: c for c in COMMANDS}
#: every name and alias -> the canonical command
CANON: dict[str, str] = {a: c.name for c in COMMANDS for a in (c.name, *c.aliases)}
