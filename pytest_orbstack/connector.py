"""The pyinfra connector ``@orb/NAME``: run pyinfra against an OrbStack machine through ``orbctl``.

Usage::

    pyinfra @orb/my-machine deploy.py -y                  # one machine
    pyinfra @orb/web,@orb/db deploy.py -y                 # several
    pyinfra @orb deploy.py -y                             # every machine ``orbctl list`` shows

The ``orbctl`` executable is chosen as the plugin chooses it: host data ``orb_orbctl`` (a
path), else ``$ORBSTACK_ORBCTL``, else ``ORBSTACK_BACKEND=sim`` means the bundled ``orbsim``
simulator (Linux), else ``orbctl`` on ``PATH``.  API users may also set ``orb_env`` (extra
environment for the ``orbctl`` process, e.g. ``ORBSIM_HOME`` for the simulator) or
``orb_client`` (an :class:`~pytest_orbstack.orbctl.Orbctl` instance, used as is).  Everything
else in the process environment is inherited.

Commands run as the machine's default user, as over SSH (``_sudo=True`` for root); host data
``orb_user`` connects as another user of the machine, as ``ssh_user`` does for ``@ssh``::

    pyinfra @orb/web deploy.py -y --data orb_user=deploy

How it works:

* ``connect()`` runs ``orbctl info`` once and ``orbctl start`` when the machine is not running;
  every failure raises :class:`pyinfra.api.exceptions.ConnectError` with ``orbctl``'s own error
  text (nothing is printed, nothing is retried).
* Commands are built by pyinfra itself (``make_unix_command_for_host``: ``_sudo``,
  ``_sudo_user``, ``_su_user``, ``_env``, ``_chdir``, ``_shell_executable``, ...) and run as the
  argv ``["sh", "-c", COMMAND]`` through ``orbctl run -w ""``: the already-quoted pyinfra command
  is ONE argument, so nothing is re-split or re-joined.  ``_stdin`` is sent as standard input,
  ``_timeout`` kills the ``orbctl`` process group and fails the command the way pyinfra's own
  connectors do (``TimeoutError``), ``_success_exit_codes`` decides success.  Commands inside
  machines are never retried.
* ``put_file``/``get_file`` accept paths and file objects (``StringIO``/``BytesIO`` from
  ``files.put``/``files.template``).  ``orbctl push``/``pull`` copy as the machine's default user
  only, so files always travel through a uniquely named temporary file in the machine, which is
  then copied into place (or out of place) by a command that honours ``_sudo``/``_sudo_user``/
  ``_su_user`` like any other: root-owned destinations work with ``_sudo=True``, and ``cp`` onto
  an existing file keeps its owner and mode, as pyinfra's ``@ssh`` connector does.  Temporary
  files are removed on both sides on every path.
* Blocking ``orbctl`` calls run in gevent's thread pool when ``subprocess`` is not monkey-patched
  (the API case), so several hosts progress in parallel without patching the interpreter.
"""

from __future__ import annotations

import importlib
import io
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from io import IOBase
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, cast

import pyinfra
from pyinfra import logger
from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.exceptions import ConnectError, InventoryError
from pyinfra.api.output import echo, format_text
from pyinfra.api.util import get_file_io
from pyinfra.connectors.base import BaseConnector, DataMeta
from pyinfra.connectors.util import (
    CommandOutput,
    OutputLine,
    execute_command_with_sudo_retry,
    make_unix_command_for_host,
)

from pytest_orbstack.connector_args import (
    AUTH_ARGUMENTS,
    runs_as_other_user,
    stdin_bytes,
    without_auth,
)
from pytest_orbstack.errors import (
    MachineNotFoundError,
    OrbctlError,
    OrbctlTimeoutError,
    OrbStackUnavailableError,
)
from pytest_orbstack.orbctl import ENV_BACKEND, ENV_ORBCTL, CompletedCall, Orbctl, select_executable

if TYPE_CHECKING:
    from pyinfra.api.host import Host
    from pyinfra.api.state import State

T = TypeVar("T")

#: Prefix of temporary files this connector creates (host side and machine side).
TEMP_PREFIX = "pyinfra-orb-"
#: Where machine-side temporary files go when pyinfra gives no temp directory.
DEFAULT_REMOTE_TEMP_DIR = "/tmp"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class OrbConnectorData(TypedDict, total=False):
    orb_name: str
    orb_user: str | None
    orb_orbctl: str | None
    orb_env: dict[str, str] | None
    orb_client: Orbctl | None
    orb_start: bool


connector_data_meta: dict[str, DataMeta] = {
    "orb_name": DataMeta("Name (or id) of the OrbStack machine", None),
    "orb_user": DataMeta(
        "Machine user to connect as (like ssh_user for @ssh; default: the machine's default user)",
        None,
    ),
    "orb_orbctl": DataMeta(
        "Path of the orbctl executable (default: $ORBSTACK_ORBCTL, else orbsim with "
        "ORBSTACK_BACKEND=sim, else orbctl on PATH)",
        None,
    ),
    "orb_env": DataMeta("Extra environment variables for the orbctl process", None),
    "orb_client": DataMeta("An Orbctl client object to use as is (API only)", None),
    "orb_start": DataMeta("Start the machine on connect when it is not running", True),
}


def validate_machine_name(name: str) -> str:
    """Check ``name`` is usable as an ``orbctl -m`` argument; return it."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InventoryError(
            f"@orb: invalid machine name {name!r} (expected letters, digits, '-', '.', '_'; "
            "use @orb/NAME)"
        )
    return name


def _backend() -> str:
    return os.environ.get(ENV_BACKEND, "").strip() or "auto"


def _not_found_hint() -> str:
    """How to point the connector at an orbctl (or at the simulator)."""
    if _backend() == "sim":
        return (
            f"{ENV_BACKEND}=sim but the orbsim simulator is not installed next to this Python "
            "or on PATH (pip install pytest-orbstack)"
        )
    return (
        f"install OrbStack, or set {ENV_ORBCTL} to the orbctl executable; on Linux, set "
        f"{ENV_BACKEND}=sim to use the bundled orbsim simulator"
    )


def _blocking(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking call without stalling other greenlets.

    The pyinfra CLI monkey-patches ``subprocess`` (cooperative already): call directly.  In API
    use nothing is patched, so the call runs in gevent's native thread pool while this greenlet
    waits cooperatively.
    """
    gevent: Any = importlib.import_module("gevent")
    monkey: Any = importlib.import_module("gevent.monkey")
    if monkey.is_module_patched("subprocess"):
        return func(*args, **kwargs)
    return cast(T, gevent.get_hub().threadpool.apply(func, args, kwargs))


def _output_lines(buffer_name: str, data: bytes) -> list[OutputLine]:
    if not data:
        return []
    parts = data.decode("utf-8", errors="replace").split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    return [OutputLine(buffer_name, part) for part in parts]


def _write_host_temp(filename_or_io: Any) -> str:
    """Copy a path or file object into ``data`` in a new private (0700) host temp directory.

    The file itself is 0644, as a file uploaded over SSH would be: ``cp`` gives a new
    destination its source's mode, and the copy into place may run as another machine user who
    must read the machine-side copy.  The 0700 directory keeps it private on the host; set
    ``mode=`` on the operation for secrets.
    ``orbctl push`` reads it as the Mac user who owns it (OrbStack's file sharing acts as that
    user); the simulator stages it as root.  Keeping it private matters: templates may render
    secrets.  Returns the file's path; remove its directory when done.
    """
    directory = tempfile.mkdtemp(prefix=TEMP_PREFIX)
    path = os.path.join(directory, "data")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out, get_file_io(filename_or_io) as src:
            data = src.read()
            if isinstance(data, str):
                data = data.encode("utf-8")
            out.write(data)
        os.chmod(path, 0o644)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    # OrbStack maps macOS paths under /private (not /var) 1:1; realpath gives that form.
    return os.path.realpath(path)


def _write_to_target(data: bytes, filename_or_io: Any) -> None:
    if isinstance(filename_or_io, io.TextIOBase):
        filename_or_io.write(data.decode("utf-8"))
        return
    with get_file_io(filename_or_io, "wb") as out:
        out.write(data)


class OrbConnector(BaseConnector):
    """Run pyinfra operations in OrbStack machines: ``@orb/NAME``.

    ``@orb`` on its own expands to every machine ``orbctl list`` shows (running or stopped;
    stopped ones are started on connect), grouped as ``@orb``.  An empty list is an inventory
    error, not an empty deploy.
    """

    handles_execution = True

    data_cls = OrbConnectorData
    data_meta = connector_data_meta
    data: OrbConnectorData

    def __init__(self, state: State, host: Host) -> None:
        super().__init__(state, host)
        self._client: Orbctl | None = None
        #: The machine's default user (who ``orbctl push`` is meant to write as), from
        #: ``info`` at connect; ``""`` when OrbStack did not say.
        self._default_user: str | None = None

    # -- inventory -------------------------------------------------------------------------

    @staticmethod
    def make_names_data(name: str | None = None) -> Iterator[tuple[str, dict[str, Any], list[str]]]:
        if name:
            validate_machine_name(name)
            yield f"@orb/{name}", {"orb_name": name}, ["@orb"]
            return
        executable = select_executable(_backend())
        if executable is None:
            raise InventoryError(f"@orb: cannot find orbctl ({_not_found_hint()})")
        try:
            records = Orbctl(executable).list()
        except OrbctlError as exc:
            raise InventoryError(f"@orb: cannot list OrbStack machines: {exc}") from exc
        if not records:
            raise InventoryError("@orb: orbctl list shows no machines; use @orb/NAME")
        for record in records:
            yield f"@orb/{record.name}", {"orb_name": record.name}, ["@orb"]

    # -- connection ------------------------------------------------------------------------

    @property
    def machine(self) -> str:
        name = self.data.get("orb_name")
        if not name:
            raise ConnectError(f"{self.host.name}: no OrbStack machine name (use @orb/NAME)")
        return name

    @property
    def client(self) -> Orbctl:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self) -> Orbctl:
        given = self.data.get("orb_client")
        if given is not None:
            return given
        explicit = self.data.get("orb_orbctl")
        executable = select_executable(_backend(), explicit)
        if executable is None:
            if explicit:
                raise ConnectError(
                    f"cannot find the orbctl executable orb_orbctl={explicit!r}; fix the path"
                )
            raise ConnectError(f"cannot find the orbctl executable: {_not_found_hint()}")
        return Orbctl(executable, env=self.data.get("orb_env"))

    def connect(self) -> None:
        name = self.machine
        client = self.client
        try:
            info = _blocking(client.info, name)
        except MachineNotFoundError as exc:
            raise ConnectError(
                f"OrbStack machine {name!r} does not exist ({exc.message or exc}); "
                f"create it with: orbctl create debian {name}"
            ) from exc
        except OrbStackUnavailableError as exc:
            raise ConnectError(f"OrbStack is not available: {exc}") from exc
        except OrbctlError as exc:
            raise ConnectError(f"cannot inspect OrbStack machine {name!r}: {exc}") from exc
        except ValueError as exc:  # unparsable JSON
            raise ConnectError(f"unexpected orbctl info output for {name!r}: {exc}") from exc
        self._default_user = info.record.default_username or ""
        if info.state != "running":
            self._start(name, info.state)
        if self.user is not None:
            self._check_user(name, self.user)

    def _start(self, name: str, state: str) -> None:
        if not self.data.get("orb_start", True):
            raise ConnectError(f"OrbStack machine {name!r} is {state} (orb_start is off)")
        logger.info("%sstarting %s machine %s", self.host.print_prefix, state, name)
        try:
            _blocking(self.client.start, name)
        except OrbctlError as exc:
            raise ConnectError(
                f"OrbStack machine {name!r} is {state} and could not be started: {exc}"
            ) from exc

    def _check_user(self, name: str, user: str) -> None:
        """``orb_user`` must be a user of the machine: say so at connect, not per command."""
        try:
            call = self._invoke(["true"])
        except (OSError, TimeoutError) as exc:
            raise ConnectError(f"cannot run commands in {name!r} as {user!r}: {exc}") from exc
        if call.returncode != 0:
            detail = call.stderr.decode(errors="replace").strip() or f"exit {call.returncode}"
            raise ConnectError(
                f"cannot run commands in OrbStack machine {name!r} as orb_user={user!r}: "
                f"{detail}; create the user first or drop orb_user"
            )

    def disconnect(self) -> None:
        """Nothing to close: every command is its own ``orbctl`` invocation."""

    # -- commands --------------------------------------------------------------------------

    @property
    def user(self) -> str | None:
        """The machine user commands run as (``orb_user``; None: the default user)."""
        return self.data.get("orb_user") or None

    def _invoke(
        self,
        argv: list[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        default_user: bool = False,
    ) -> CompletedCall:
        user = None if default_user else self.user
        try:
            return _blocking(
                self.client.run,
                self.machine,
                argv,
                user=user,
                workdir="",
                input=input,
                timeout=timeout,
            )
        except OrbctlTimeoutError as exc:
            raise TimeoutError(f"orbctl run in {self.machine!r}: {exc}") from exc
        except OrbctlError as exc:
            raise OSError(f"orbctl run in {self.machine!r} failed: {exc}") from exc

    def run_shell_command(
        self,
        command: StringCommand,
        print_output: bool = False,
        print_input: bool = False,
        **arguments: Any,
    ) -> tuple[bool, CommandOutput]:
        """Run a pyinfra command in the machine; return ``(success, output)``.

        Raises ``TimeoutError`` when ``_timeout`` expires (pyinfra turns that into a failed
        command) and ``OSError`` when ``orbctl`` itself cannot run.
        """
        arguments.pop("_get_pty", None)  # orbctl gets no TTY from us, by design
        timeout = arguments.pop("_timeout", None)
        stdin = stdin_bytes(arguments.pop("_stdin", None))
        success_exit_codes = arguments.pop("_success_exit_codes", None)
        prefix = self.host.print_prefix

        def execute() -> tuple[int, CommandOutput]:
            unix_command = make_unix_command_for_host(self.state, self.host, command, **arguments)
            raw = unix_command.get_raw_value()
            logger.debug("--> Running command on %s: %s", self.machine, unix_command)
            if print_input:
                echo(f"{prefix}>>> {unix_command}", err=True)
            call = self._invoke(["sh", "-c", raw], input=stdin, timeout=timeout)
            lines = _output_lines("stdout", call.stdout) + _output_lines("stderr", call.stderr)
            if print_output:
                for line in lines:
                    text = line.line
                    if line.buffer_name == "stderr":
                        text = format_text(text, "red")
                    echo(f"{prefix}{text}", err=True)
            logger.debug("--> Command exit status: %i", call.returncode)
            return call.returncode, CommandOutput(lines)

        if pyinfra.is_cli:
            # The CLI may prompt for a sudo password once, exactly as @local/@ssh do.
            returncode, output = execute_command_with_sudo_retry(
                self.host, cast(Any, arguments), execute
            )
        else:
            returncode, output = execute()

        if success_exit_codes:
            return returncode in success_exit_codes, output
        return returncode == 0, output

    # -- files -----------------------------------------------------------------------------

    def _remote_temp_path(self, remote_temp_filename: str | None) -> str:
        directory = (
            posixpath.dirname(remote_temp_filename)
            if remote_temp_filename
            else DEFAULT_REMOTE_TEMP_DIR
        ) or DEFAULT_REMOTE_TEMP_DIR
        return posixpath.join(directory, f"{TEMP_PREFIX}{uuid.uuid4().hex}")

    def _remove_remote(
        self, path: str, arguments: Mapping[str, Any], *, as_default_user: bool = False
    ) -> None:
        """Best-effort removal of a machine-side temporary file, as the user who wrote it: the
        operation's user (``arguments``), or the default user (``orbctl push`` writes as it)."""
        try:
            if as_default_user:
                call = self._invoke(["rm", "-f", path], default_user=True)
                ok, error = call.returncode == 0, call.stderr.decode(errors="replace")
            else:
                args = {
                    k: v for k, v in arguments.items() if k not in ("_stdin", "_success_exit_codes")
                }
                ok, output = self.run_shell_command(
                    StringCommand("rm", "-f", QuoteString(path)), **args
                )
                error = output.stderr
        except (OSError, TimeoutError) as exc:
            logger.warning("%scould not remove %s: %s", self.host.print_prefix, path, exc)
            return
        if not ok:
            logger.warning("%scould not remove %s: %s", self.host.print_prefix, path, error)

    def _settle_pushed(self, path: str) -> None:
        """Give a pushed file the owner and mode the rest of the upload needs - the default
        user's, 0644 - whatever ``push`` left: OrbStack 2.2 changed the copy mechanism and
        its owner/mode are not documented (docs/orbctl-contract.md §16), so either model gives
        the same result.  One root command; the copy into place then works as before."""
        if self._default_user is None:
            try:
                info = _blocking(self.client.info, self.machine)
            except OrbctlError as exc:
                raise OSError(f"cannot inspect {self.machine!r} after push: {exc}") from exc
            self._default_user = info.record.default_username or ""
        script = (
            'chmod 0644 -- "$1" && '
            'if [ -n "$2" ] && id -u -- "$2" >/dev/null 2>&1; then chown -- "$2:" "$1"; fi'
        )
        try:
            call = _blocking(
                self.client.run,
                self.machine,
                ["sh", "-c", script, "sh", path, self._default_user],
                user="root",
                workdir="",
            )
        except OrbctlError as exc:
            raise OSError(
                f"cannot set owner and mode of {path} in {self.machine!r}: {exc}"
            ) from exc
        if call.returncode != 0:
            raise OSError(
                f"cannot set owner and mode of {path} in {self.machine!r}: "
                f"{call.stderr.decode(errors='replace').strip() or call.returncode}"
            )

    def put_file(
        self,
        filename_or_io: str | IOBase,
        remote_filename: str,
        remote_temp_filename: str | None = None,
        print_output: bool = False,
        print_input: bool = False,
        **arguments: Any,
    ) -> bool:
        """Upload a local file or file object to ``remote_filename``.

        The data goes host temp file -> ``orbctl push`` -> unique machine temp file (made the
        default user's, 0644, explicitly) -> ``cp``
        (run with the operation's ``_sudo``/``_su_user``/... arguments) -> destination.  When the
        copy runs as the default user or root, the same command removes the temp file; when it
        runs as another user (who cannot delete the default user's file in sticky ``/tmp``), a
        separate ``rm`` as the default user does.  Raises ``OSError`` with the failing step's
        error text.
        """
        arguments.pop("_stdin", None)
        remote_temp = self._remote_temp_path(remote_temp_filename)
        quoted_temp = QuoteString(remote_temp)
        # The temp file belongs to the default user: who else copies it cannot remove it.
        other_user = runs_as_other_user(arguments) or self.user not in (None, "root")
        local_temp = _write_host_temp(filename_or_io)
        removed = False
        try:
            call = _blocking(self.client.push, self.machine, [local_temp], remote_temp)
            if call.returncode != 0:
                raise OSError(
                    f"orbctl push to {self.machine}:{remote_temp} failed: "
                    f"{call.stderr.decode(errors='replace').strip() or call.returncode}"
                )
            self._settle_pushed(remote_temp)
            if other_user:
                copy = StringCommand("cp", quoted_temp, QuoteString(remote_filename))
            else:
                copy = StringCommand(
                    "cp", quoted_temp, QuoteString(remote_filename), ";",
                    "rc=$?;", "rm", "-f", quoted_temp, ";", "exit", "$rc",
                )  # fmt: skip
            ok, output = self.run_shell_command(
                copy, print_output=print_output, print_input=print_input, **arguments
            )
            removed = not other_user
            if not ok:
                raise OSError(f"cannot write {remote_filename}: {output.stderr or output.output}")
        except OrbctlError as exc:
            raise OSError(f"upload to {self.machine}:{remote_filename} failed: {exc}") from exc
        finally:
            shutil.rmtree(os.path.dirname(local_temp), ignore_errors=True)
            if not removed:
                # Pushed as the default user (maybe partially): remove it as that user.
                self._remove_remote(remote_temp, without_auth(arguments), as_default_user=True)

        if print_output:
            echo(f"{self.host.print_prefix}file uploaded: {remote_filename}", err=True)
        return True

    def get_file(
        self,
        remote_filename: str,
        filename_or_io: str | IOBase,
        remote_temp_filename: str | None = None,
        print_output: bool = False,
        print_input: bool = False,
        **arguments: Any,
    ) -> bool:
        """Download ``remote_filename`` into a local path or file object.

        ``cp`` (with the operation's privilege arguments) copies it to a unique readable temp
        file in the machine, ``orbctl pull`` brings that to a host temp directory, and the
        bytes are written to ``filename_or_io``.  Raises ``OSError`` on failure.
        """
        arguments.pop("_stdin", None)
        remote_temp = self._remote_temp_path(remote_temp_filename)
        local_dir = tempfile.mkdtemp(prefix=TEMP_PREFIX)  # 0700, this user's (see put_file)
        local_temp = os.path.join(os.path.realpath(local_dir), "data")
        copied = False
        try:
            # Readable by the default user whoever wrote it (sudo makes it root's).
            copy = StringCommand(
                "cp",
                QuoteString(remote_filename),
                QuoteString(remote_temp),
                "&&",
                "chmod",
                "0644",
                QuoteString(remote_temp),
            )
            copied = True  # from here on the temp file may exist in the machine
            ok, output = self.run_shell_command(
                copy, print_output=print_output, print_input=print_input, **arguments
            )
            if not ok:
                raise OSError(f"cannot read {remote_filename}: {output.stderr or output.output}")
            call = _blocking(self.client.pull, self.machine, [remote_temp], local_temp)
            if call.returncode != 0:
                raise OSError(
                    f"orbctl pull of {self.machine}:{remote_temp} failed: "
                    f"{call.stderr.decode(errors='replace').strip() or call.returncode}"
                )
            with open(local_temp, "rb") as f:
                data = f.read()
            _write_to_target(data, filename_or_io)
        except OrbctlError as exc:
            raise OSError(f"download of {self.machine}:{remote_filename} failed: {exc}") from exc
        finally:
            shutil.rmtree(local_dir, ignore_errors=True)
            if copied:
                # Written by the escalated user: remove it as that user (it owns the file).
                self._remove_remote(remote_temp, arguments)

        if print_output:
            echo(f"{self.host.print_prefix}file downloaded: {remote_filename}", err=True)
        return True


__all__ = [
    "AUTH_ARGUMENTS",
    "OrbConnector",
    "OrbConnectorData",
    "stdin_bytes",
    "validate_machine_name",
]
