"""The one module that runs ``orbctl``.

Every call is an argv list (never a shell string), runs with ``stdin=DEVNULL`` unless input is
given (so ``orbctl`` never sees a TTY: no PTY, no raw mode, no delete prompt), captures output,
passes explicit ``-m`` / ``-f json`` flags, and has a timeout; a hung ``orbctl`` is killed together
with its whole process group.  Failures become typed exceptions from :mod:`pytest_orbstack.errors`.

The executable is chosen by the caller (option ``--orbstack-orbctl`` / env ``ORBSTACK_ORBCTL``):
the client never knows whether it talks to OrbStack or to the bundled simulator.  What it parses
and returns are the plain records of :mod:`pytest_orbstack.records` (re-exported here).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from pytest_orbstack.errors import (
    OrbctlAbortedError,
    OrbctlError,
    OrbctlTimeoutError,
    OrbStackUnavailableError,
    UnsupportedSettingError,
    classify,
    first_error_line,
)
from pytest_orbstack.records import (
    CompletedCall,
    CreateOptions,
    ImageInfo,
    MachineInfo,
    MachineRecord,
    parse_machine_info,
    parse_machine_list,
)

log = logging.getLogger("pytest_orbstack")

ENV_ORBCTL = "ORBSTACK_ORBCTL"
#: Environment variable naming the backend: ``auto``, ``orbctl`` or ``sim`` (the simulator).
ENV_BACKEND = "ORBSTACK_BACKEND"
DEFAULT_TIMEOUT = 60.0
#: Per-command default timeouts (seconds); create downloads an image every time on OrbStack.
DEFAULT_TIMEOUTS: Mapping[str, float] = {
    "create": 300.0,
    "clone": 180.0,
    "import": 300.0,
    "export": 300.0,
    "start": 90.0,
    "stop": 90.0,
    "restart": 120.0,
    "delete": 90.0,
    "run": 600.0,
}

T = TypeVar("T")


def resolve_executable(explicit: str | os.PathLike[str] | None = None) -> str | None:
    """The ``orbctl`` to run: ``explicit``, else ``$ORBSTACK_ORBCTL``, else ``orbctl`` on PATH.

    Returns an absolute path, or ``None`` when nothing usable is found.
    """
    candidate = str(explicit) if explicit else os.environ.get(ENV_ORBCTL) or "orbctl"
    if os.sep in candidate:
        path = Path(candidate).expanduser()
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(candidate)


def simulator_executable() -> str | None:
    """The bundled ``orbsim`` console script (next to this Python, or on PATH)."""
    beside = Path(sys.executable).with_name("orbsim")
    if beside.is_file():
        return str(beside)
    return shutil.which("orbsim")


def select_executable(backend: str = "auto", explicit: str | None = None) -> str | None:
    """The executable a backend means: ``explicit`` (an orbctl path) wins; ``sim`` is the
    bundled ``orbsim``; ``auto``/``orbctl`` is :func:`resolve_executable` (``$ORBSTACK_ORBCTL``,
    else ``orbctl`` on PATH).  The plugin and the pyinfra connector both choose this way."""
    if explicit:
        return resolve_executable(explicit)
    if backend == "sim":
        return simulator_executable()
    return resolve_executable()


class Orbctl:
    """A typed client for the ``orbctl`` CLI.

    Each method is one invocation: there is no retry here (see :mod:`pytest_orbstack.retry`).
    ``observer`` is called after every invocation with ``(argv, returncode, seconds)``; reports
    use it to count and time calls.
    """

    def __init__(
        self,
        executable: str | os.PathLike[str],
        *,
        timeout: float | None = None,
        timeouts: Mapping[str, float] | None = None,
        env: Mapping[str, str] | None = None,
        observer: Callable[[Sequence[str], int | None, float], None] | None = None,
    ) -> None:
        self.executable = str(executable)
        self.default_timeout = timeout
        self.timeouts = {**DEFAULT_TIMEOUTS, **(timeouts or {})}
        self.env = dict(env) if env is not None else None
        self.observer = observer
        self._live: set[subprocess.Popen[bytes]] = set()
        self._live_lock = threading.Lock()
        self._aborted = False
        #: Whether this orbctl reports addresses (see :attr:`reports_addresses`); ``None`` until
        #: decided.
        self._reports_addresses: bool | None = None
        self._version: str | None = None

    def copy(self) -> Orbctl:
        """A client with the same settings (and its own :meth:`abort`)."""
        other = Orbctl(
            self.executable,
            timeout=self.default_timeout,
            timeouts=self.timeouts,
            env=self.env,
            observer=self.observer,
        )
        other._reports_addresses = self._reports_addresses
        other._version = self._version
        return other

    @property
    def reports_addresses(self) -> bool:
        """Whether this OrbStack reports machine addresses, so that a running machine without
        ``ip4`` has not got one *yet* (it lags ``start``) and is worth waiting for.

        Decided from the version (2.0 and later always print ``ip4``/``ip6`` for a running
        machine) or from a running machine's ``info`` that carried an address field - never
        from a stopped machine's, which has none on 2.x either (docs/orbctl-contract.md §16).
        OrbStack before mid-2025 never reports them (see :attr:`MachineInfo.reports_addresses`).
        """
        if self._reports_addresses is None:
            try:
                version = self.cached_version()
            except (OrbctlError, ValueError):
                return False  # ask again next time; an observed address may decide it
            if version_at_least(version, (2, 0)):
                self._reports_addresses = True
            else:
                return False
        return self._reports_addresses

    @reports_addresses.setter
    def reports_addresses(self, value: bool) -> None:
        self._reports_addresses = value

    def cached_version(self) -> str:
        """:meth:`version`, asked once per client."""
        if self._version is None:
            self._version = self.version()
        return self._version

    def abort(self) -> None:
        """Kill every call in flight (with its process group) and refuse new ones.

        For background work on Ctrl-C: a hung ``orbctl`` must not hold the run for its whole
        timeout.  Calls in flight and later calls raise :class:`OrbctlAbortedError`.
        """
        self._aborted = True
        with self._live_lock:
            live = list(self._live)
        for proc in live:
            _kill_group(proc)

    @property
    def aborted(self) -> bool:
        """:meth:`abort` was called: work on this client's behalf should stop too."""
        return self._aborted

    def __repr__(self) -> str:
        return f"Orbctl({self.executable!r})"

    # -- plumbing --------------------------------------------------------------------------

    def timeout_for(self, command: str) -> float:
        if self.default_timeout is not None:  # --orbstack-timeout: lifecycle calls use it as is
            return (
                max(self.default_timeout, self.timeouts["run"])
                if command == "run"
                else self.default_timeout
            )
        return self.timeouts.get(command, DEFAULT_TIMEOUT)

    def invoke(
        self,
        args: Sequence[str],
        *,
        timeout: float | None = None,
        input: bytes | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> CompletedCall:
        """Run ``orbctl ARGS...`` and return its outcome whatever the exit code.

        Raises :class:`OrbctlTimeoutError` (after killing the process group) on timeout and
        :class:`OrbStackUnavailableError` when the executable cannot be started.
        """
        argv = [self.executable, *args]
        for arg in argv:
            if not isinstance(arg, str):
                raise TypeError(f"orbctl arguments must be strings, got {arg!r} in {argv!r}")
        limit = timeout if timeout is not None else self.timeout_for(args[0] if args else "")
        started = time.monotonic()
        if self._aborted:
            raise OrbctlAbortedError(argv, None, "", message="aborted before it started")
        try:
            proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
                argv,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._child_env(),
                cwd=cwd,
                start_new_session=True,  # own process group: a timeout kills all of it
            )
        except OSError as exc:
            raise OrbStackUnavailableError(
                argv, None, str(exc), message=f"cannot run {self.executable!r}: {exc}"
            ) from exc
        with self._live_lock:
            self._live.add(proc)
        if self._aborted:  # abort() ran between Popen and the line above
            _kill_group(proc)
        try:
            stdout, stderr = proc.communicate(input=input, timeout=limit)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            stderr = _drain_after_kill(proc)
            self._observe(argv, None, started)
            raise OrbctlTimeoutError(argv, limit, stderr.decode(errors="replace")) from None
        except BaseException:
            # KeyboardInterrupt and friends: never leave the child running behind us.
            _kill_group(proc)
            proc.wait()
            raise
        finally:
            with self._live_lock:
                self._live.discard(proc)
        self._observe(argv, proc.returncode, started)
        if self._aborted:
            raise OrbctlAbortedError(argv, proc.returncode, "", message="killed by abort()")
        return CompletedCall(argv, proc.returncode, stdout, stderr, time.monotonic() - started)

    def check(
        self,
        args: Sequence[str],
        *,
        timeout: float | None = None,
        input: bytes | None = None,
    ) -> str:
        """Run ``orbctl ARGS...``; return stdout, or raise the classified error."""
        call = self.invoke(args, timeout=timeout, input=input)
        if call.returncode != 0:
            raise self.error_for(call)
        return call.stdout.decode(errors="replace")

    @staticmethod
    def error_for(call: CompletedCall) -> OrbctlError:
        stderr = call.stderr.decode(errors="replace")
        stdout = call.stdout.decode(errors="replace")
        cls = classify(stderr, call.returncode)
        return cls(call.argv, call.returncode, stderr, stdout)

    def _child_env(self) -> dict[str, str] | None:
        if self.env is None:
            return None
        return {**os.environ, **self.env}

    def _observe(self, argv: Sequence[str], rc: int | None, started: float) -> None:
        if self.observer is not None:
            self.observer(argv, rc, time.monotonic() - started)
        log.debug("orbctl %s -> %s (%.2fs)", argv[1:], rc, time.monotonic() - started)

    # -- general ---------------------------------------------------------------------------

    def version(self) -> str:
        """The first line's version, e.g. ``2.0.5`` from ``Version: 2.0.5 (19905)``."""
        out = self.check(["version"], timeout=self.timeouts.get("version", 30.0))
        for line in out.splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip().split(" ")[0]
        return out.strip()

    def status(self) -> str:
        """``Running``, ``Stopped`` or ``Starting``; never starts OrbStack."""
        call = self.invoke(["status"], timeout=self.timeouts.get("status", 30.0))
        text = call.stdout.decode(errors="replace").strip()
        if text in {"Running", "Stopped", "Starting"}:
            return text
        if call.returncode != 0:
            raise self.error_for(call)
        raise OrbctlError(
            call.argv,
            call.returncode,
            call.stderr.decode(errors="replace"),
            message=f"unexpected status output {text!r}",
        )

    def start_orbstack(self, *, timeout: float) -> None:
        """``orbctl start`` without names: start OrbStack itself, as its own commands do on
        demand (docs/orbctl-contract.md §1).  Never called with names here."""
        self.check(["start"], timeout=timeout)

    def status_reason(self) -> tuple[str, str]:
        """``(status, stderr line)``: the simulator explains on stderr why it is unusable."""
        call = self.invoke(["status"], timeout=self.timeouts.get("status", 30.0))
        return (
            call.stdout.decode(errors="replace").strip(),
            first_error_line(call.stderr.decode(errors="replace")),
        )

    # -- machines --------------------------------------------------------------------------

    def list(self, *, running: bool = False) -> list[MachineRecord]:
        args = ["list", "-f", "json"]
        if running:
            args.append("-r")
        return parse_machine_list(self.check(args))

    def info(self, name: str) -> MachineInfo:
        _require_name(name)
        info = parse_machine_info(self.check(["info", "-f", "json", name]))
        if info.reports_addresses and info.state == "running":
            self._reports_addresses = True
        return info

    def create(
        self,
        image: str,
        name: str,
        options: CreateOptions | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        _require_name(name)
        flags = options.argv() if options is not None else []
        if options is not None and options.has_settings():
            self._require_settings(["create", *flags, image, name])
        self.check(["create", *flags, image, name], timeout=timeout)

    def clone(self, source: str, name: str, *, timeout: float | None = None) -> None:
        _require_name(source)
        _require_name(name)
        self.check(["clone", source, name], timeout=timeout)

    def start(self, *names: str, timeout: float | None = None) -> None:
        self.check(["start", *_require_names("start", names)], timeout=timeout)

    def stop(self, *names: str, timeout: float | None = None) -> None:
        # Without names orbctl stops the whole OrbStack VM: refuse.
        self.check(["stop", *_require_names("stop", names)], timeout=timeout)

    def delete(self, *names: str, timeout: float | None = None) -> None:
        """``delete -f NAME...``: by NAME only.  Without names (or with ``-a``) orbctl deletes
        every machine, and an id crashes OrbStack 2.2.3 (a Go panic, exit 2: records are looked
        up by name, docs/orbctl-contract.md §16): both are refused here."""
        for name in _require_names("delete", names):
            if _ULID.match(name):
                raise ValueError(
                    f"refusing to delete {name!r}: it looks like a machine id, and orbctl "
                    f"delete takes names only (an id crashes OrbStack 2.2.3)"
                )
        self.check(["delete", "-f", *names], timeout=timeout)

    def set_machine_config(self, name: str, key: str, value: str) -> None:
        """``config set machine.NAME.KEY VALUE`` (OrbStack 2.2's per-machine keys)."""
        _require_name(name)
        if not key.replace("_", "").isalnum():
            raise ValueError(f"invalid machine config key {key!r}")
        argv = ["config", "set", f"machine.{name}.{key}", value]
        self._require_settings(argv)
        self.check(argv)

    def _require_settings(self, argv: Sequence[str]) -> None:
        """Per-machine settings arrived with OrbStack 2.2 (docs/orbctl-contract.md §16): an
        older version is refused before the call, with one clear error instead of cobra's
        ``unknown flag`` and usage dump (which is classified the same way, errors.py, for an
        OrbStack whose version says nothing).  Asked once per client."""
        version = self.cached_version()
        if re.match(r"\d+\.\d+", version) and not version_at_least(version, (2, 2)):
            raise UnsupportedSettingError(
                argv,
                None,
                "",
                message=(
                    f"this OrbStack ({version}) does not support per-machine settings; they "
                    f"need OrbStack 2.2 or later: update OrbStack, or drop cpus=/memory=/disk=/"
                    f"isolated_from_mac= from the marker or factory call"
                ),
            )

    def rename(self, old: str, new: str, *, timeout: float | None = None) -> None:
        _require_name(old)
        _require_name(new)
        self.check(["rename", old, new], timeout=timeout)

    def logs(self, name: str, *, all: bool = False) -> str:
        _require_name(name)
        return self.check(["logs", *(["-a"] if all else []), name])

    # -- inside machines (never retried; the exit code is the command's) ------------------

    def run(
        self,
        name: str,
        argv: Sequence[str],
        *,
        user: str | None = None,
        workdir: str | None = None,
        input: bytes | None = None,
        timeout: float | None = None,
    ) -> CompletedCall:
        """``orbctl run -m NAME [-u USER] [-w DIR] ARGV...``.

        OrbStack quotes each element of ``argv`` for the login shell, so there is no shell
        interpretation of the arguments: pass ``["sh", "-c", script]`` for shell features.  The
        returned ``returncode`` is the remote command's.  No ``--`` is emitted: OrbStack's custom
        flag parser rejects it (docs/orbctl-contract.md §2 run), so an ``argv`` whose first
        element starts with ``-`` is refused.
        """
        _require_name(name)
        if not argv:
            raise ValueError("run needs a command: orbctl run without one opens a shell")
        if argv[0].startswith("-"):
            raise ValueError(
                f"command may not start with '-' (orbctl parses it as a flag): {argv!r}"
            )
        args = ["run", "-m", name]
        if user:
            args += ["-u", user]
        if workdir is not None:
            args += ["-w", workdir]
        return self.invoke([*args, *argv], timeout=timeout, input=input)

    def push(
        self,
        name: str,
        sources: Iterable[str | os.PathLike[str]],
        dest: str,
        *,
        timeout: float | None = None,
    ) -> CompletedCall:
        """``orbctl push -m NAME SRC... DEST``: ``cp -rf`` as the default user, in its home."""
        _require_name(name)
        srcs = [os.fspath(s) for s in sources]
        if not srcs:
            raise ValueError("push needs at least one source")
        return self.invoke(["push", "-m", name, *srcs, dest], timeout=timeout)

    def pull(
        self,
        name: str,
        sources: Iterable[str],
        dest: str | os.PathLike[str],
        *,
        timeout: float | None = None,
    ) -> CompletedCall:
        """``orbctl pull -m NAME SRC... DEST``: ``cp -rf`` as the default user, in its home."""
        _require_name(name)
        srcs = list(sources)
        if not srcs:
            raise ValueError("pull needs at least one source")
        return self.invoke(["pull", "-m", name, *srcs, os.fspath(dest)], timeout=timeout)


#: A machine id (a ULID: 26 characters of Crockford's base32, upper case).
_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def version_at_least(version: str, wanted: tuple[int, ...]) -> bool:
    """Whether ``version`` (``2.2.3``, as :meth:`Orbctl.version` returns it) is ``wanted`` or
    later; a version that is not numbers is not."""
    parts = re.findall(r"\d+", version.split("-", 1)[0])
    if not parts:
        return False
    return tuple(int(p) for p in parts[: len(wanted)]) >= wanted


def _require_name(name: str) -> str:
    if not isinstance(name, str) or not name or name.startswith("-"):
        raise ValueError(f"invalid machine name {name!r}")
    return name


def _require_names(command: str, names: Sequence[str]) -> list[str]:
    if not names:
        raise ValueError(
            f"refusing to call 'orbctl {command}' without machine names "
            f"(that would {command} every machine or OrbStack itself)"
        )
    return [_require_name(n) for n in names]


def _drain_after_kill(proc: subprocess.Popen[bytes]) -> bytes:
    """Collect stderr of a killed process; give up if a detached grandchild holds the pipes."""
    try:
        _, stderr = proc.communicate(timeout=5)
        return stderr or b""
    except subprocess.TimeoutExpired:
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        proc.wait()
        return b""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` and every process in its process group (it was started in its own)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


__all__ = [
    "DEFAULT_TIMEOUTS",
    "CreateOptions",
    "ENV_BACKEND",
    "ENV_ORBCTL",
    "CompletedCall",
    "ImageInfo",
    "MachineInfo",
    "MachineRecord",
    "Orbctl",
    "parse_machine_info",
    "parse_machine_list",
    "resolve_executable",
    "select_executable",
    "simulator_executable",
    "version_at_least",
]
