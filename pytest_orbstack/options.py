"""Command-line options, ini keys and environment variables, resolved in one place.

Precedence, for every value: marker > command-line option > ini key > environment > default.
(Markers only carry machine specs; this module resolves the run-wide settings.)  Bad values
raise :class:`pytest.UsageError` naming the option and what it accepts.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_orbstack.errors import ConfigError, OrbctlError, OrbctlTimeoutError
from pytest_orbstack.orbctl import Orbctl, select_executable, simulator_executable
from pytest_orbstack.registry import default_state_dir
from pytest_orbstack.settings import BACKENDS, KEEP_POLICIES, Settings
from pytest_orbstack.spec import DEFAULT_IMAGE, validate_image


@dataclass(frozen=True)
class Option:
    name: str  # "backend" -> --orbstack-backend, ini orbstack_backend
    help: str
    env: str | None = None
    default: str | None = None
    flag: bool = False
    metavar: str | None = None

    @property
    def cli(self) -> str:
        return f"--orbstack-{self.name}"

    @property
    def dest(self) -> str:
        return f"orbstack_{self.name.replace('-', '_')}"


OPTIONS = (
    Option("backend", "machine backend: auto (orbctl when installed), orbctl, or sim (the "
           "bundled orbsim simulator, Linux)", "ORBSTACK_BACKEND", "auto", metavar="NAME"),
    Option("orbctl", "path of the orbctl executable to run", "ORBSTACK_ORBCTL", metavar="PATH"),
    Option("image", f"default image for machines (default {DEFAULT_IMAGE})", "ORBSTACK_IMAGE",
           DEFAULT_IMAGE, metavar="IMAGE"),
    Option("keep", "keep machines after their tests: never, on-failure (and print how to log "
           "in), always", "ORBSTACK_KEEP", "never", metavar="POLICY"),
    Option("reuse", "keep session machines and templates between runs; adopt them only when "
           "their recorded spec hash matches", "ORBSTACK_REUSE", "0", flag=True),
    Option("required", "error (instead of skip) when no backend is available",
           "ORBSTACK_REQUIRED", "0", flag=True),
    Option("no-start", "skip (instead of starting OrbStack with `orbctl start`) when OrbStack "
           "is installed but stopped", "ORBSTACK_NO_START", "0", flag=True),
    Option("timeout", "timeout in seconds for each orbctl lifecycle call (default: per command, "
           "300 for create)", "ORBSTACK_TIMEOUT", metavar="SECONDS"),
    Option("retries", "retries of transient orbctl failures per operation", "ORBSTACK_RETRIES",
           "4", metavar="N"),
    Option("max-creates", "cap on concurrent machine creates/clones across all xdist workers "
           "(0 = no cap)", "ORBSTACK_MAX_CREATES", "0", metavar="N"),
    Option("report", "write a JSON report of machines and timings to PATH", None, metavar="PATH"),
    Option("timeline", "write the run's timeline to PATH: one self-contained HTML file (lanes "
           "per worker, machine phases, test bodies, waits)", None, metavar="PATH"),
    Option("pool-size", "fresh machines prepared ahead of demand, per spec and worker: auto "
           "(default: enough to cover the measured preparation time over the measured test "
           "time), a number, or 0 = off",
           "ORBSTACK_POOL_SIZE", "auto", metavar="N|auto"),
)  # fmt: skip


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("orbstack", "OrbStack machines (pytest-orbstack)")
    for opt in OPTIONS:
        env = f" [env {opt.env}]" if opt.env else ""
        ini = f" [ini {opt.dest}]"
        if opt.flag:
            group.addoption(
                opt.cli, action="store_true", default=None, dest=opt.dest, help=opt.help + ini + env
            )
            parser.addini(opt.dest, opt.help, type="string", default="")
        else:
            group.addoption(
                opt.cli,
                action="store",
                default=None,
                dest=opt.dest,
                metavar=opt.metavar,
                help=opt.help + ini + env,
            )
            parser.addini(opt.dest, opt.help, type="string", default="")


def resolve(
    opt: Option, *, cli: object, ini: object, environ: Mapping[str, str]
) -> tuple[str | None, str]:
    """``(value, origin)`` of ``opt`` by precedence: command line > ini > environment > default.

    ``cli`` is the parsed command-line value (``None`` when not given), ``ini`` the ini value
    (blank when not set).  Pure: the one place the precedence rule lives.
    """
    if cli is not None:
        return (("1" if cli else "0") if opt.flag else str(cli)), "command line"
    if isinstance(ini, str) and ini.strip():
        return ini.strip(), f"ini {opt.dest}"
    if opt.env and environ.get(opt.env, "").strip():
        return environ[opt.env].strip(), f"env {opt.env}"
    return opt.default, "default"


def raw_value(config: pytest.Config, opt: Option) -> tuple[str | None, str]:
    """``(value, origin)`` of ``opt`` for this pytest run (see :func:`resolve`)."""
    return resolve(
        opt,
        cli=config.getoption(opt.dest, default=None),
        ini=config.getini(opt.dest),
        environ=os.environ,
    )


def settings_from_config(config: pytest.Config) -> Settings:
    """Resolve and validate every option; raise :class:`pytest.UsageError` on bad values."""
    by_name = {opt.name: opt for opt in OPTIONS}

    def get(name: str, parse: Callable[[str], Any] = str) -> Any:
        opt = by_name[name]
        value, origin = raw_value(config, opt)
        if value is None:
            return None
        try:
            return parse(value)
        except (ValueError, ConfigError) as exc:
            raise pytest.UsageError(f"{opt.cli}={value!r} (from {origin}): {exc}") from None

    backend = get("backend", _choice(BACKENDS))
    image = get("image", lambda v: validate_image(v, "default image"))
    keep = get("keep", _choice(KEEP_POLICIES))
    timeout = get("timeout", _positive_float)
    retries = get("retries", _non_negative_int)
    max_creates = get("max-creates", _non_negative_int)
    pool_size = get("pool-size", _pool_size)
    report = get("report")
    timeline = get("timeline")
    explicit = get("orbctl")
    executable = _executable(backend, explicit)
    state_dir = default_state_dir()
    settings = Settings(
        executable=executable or "",
        backend=backend,
        default_image=image,
        keep=keep,
        reuse=get("reuse", _bool),
        timeout=timeout,
        retries=retries,
        max_creates=max_creates,
        pool_size=pool_size,
        report_path=Path(report).expanduser().resolve() if report else None,
        start_orbstack=not get("no-start", _bool),
        timeline_path=Path(timeline).expanduser().resolve() if timeline else None,
        state_dir=state_dir,
        registry_key=_registry_key(backend, executable),
    )
    return settings


def required(config: pytest.Config) -> bool:
    value, _ = raw_value(config, next(o for o in OPTIONS if o.name == "required"))
    return _bool(value or "0")


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def _positive_float(value: str) -> float:
    number = float(value)
    if not (number > 0 and math.isfinite(number)):
        raise ValueError("must be a positive, finite number of seconds")
    return number


def _non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError("must be a whole number") from None
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _pool_size(value: str) -> int | None:
    if value.strip().lower() == "auto":
        return None
    try:
        return _non_negative_int(value)
    except ValueError:
        raise ValueError("must be auto or a whole number (0 = off)") from None


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _executable(backend: str, explicit: str | None) -> str | None:
    # An explicit path that does not resolve is kept: probe() reports it by name.
    return select_executable(backend, explicit) or explicit


def _registry_key(backend: str, executable: str | None) -> str:
    """Machines of different backends (or simulator homes) never share a registry."""
    parts = [backend, executable or ""]
    if backend == "sim":
        parts.append(os.environ.get("ORBSIM_HOME", ""))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


#: How long a stopped OrbStack may take to start (``orbctl start``, then ``status`` Running).
START_TIMEOUT = 120.0


def probe(
    settings: Settings,
    *,
    lock: AbstractContextManager[object] | None = None,
    started: Callable[[float], None] | None = None,
) -> str | None:
    """Why machines cannot be had here (one line with the fix), or ``None`` when they can.

    A stopped OrbStack is started (``orbctl start``, at most :data:`START_TIMEOUT` seconds),
    as ``orbctl``'s own commands would start it, unless ``--orbstack-no-start``; ``lock`` (the
    run's, so xdist workers start it once) is held meanwhile and ``started`` is told the
    seconds it took.
    """
    if settings.backend == "sim" and not settings.executable:
        return "the orbsim simulator is not installed (pip install pytest-orbstack)"
    if not settings.executable:
        hint = (
            "; on Linux use the bundled simulator with --orbstack-backend=sim"
            if sys.platform != "darwin"
            else " (install OrbStack: https://orbstack.dev, or brew install orbstack)"
        )
        return f"orbctl not found on PATH; set --orbstack-orbctl or ORBSTACK_ORBCTL{hint}"
    if not os.path.isfile(settings.executable):
        return f"orbctl executable {settings.executable!r} does not exist"
    client = Orbctl(settings.executable)
    try:
        status, detail = client.status_reason()
    except (OrbctlError, OrbctlTimeoutError) as exc:
        return f"cannot ask {settings.executable} for its status: {exc}"
    if status in ("Running", "Starting"):
        return None
    if detail and settings.backend == "sim":
        return f"the orbsim simulator is unusable here: {detail}"
    if not settings.start_orbstack:
        return (
            f"OrbStack is not running ({status}) and --orbstack-no-start is set; start it with "
            f"`orbctl start` or open OrbStack.app"
        )
    with lock if lock is not None else nullcontext():
        return _start_orbstack(client, started)


def _start_orbstack(client: Orbctl, started: Callable[[float], None] | None) -> str | None:
    """Start a stopped OrbStack; the reason it cannot be had, or ``None`` once it runs."""
    begun = time.monotonic()
    deadline = begun + START_TIMEOUT
    status, detail = client.status_reason()
    if status == "Running":
        return None  # another worker started it meanwhile
    if status != "Starting":
        try:
            client.start_orbstack(timeout=START_TIMEOUT)
        except OrbctlError as exc:
            return f"OrbStack is stopped and `orbctl start` failed: {exc}"
    while True:
        status, detail = client.status_reason()
        if status == "Running":
            if started is not None:
                started(time.monotonic() - begun)
            return None
        if time.monotonic() >= deadline:
            return (
                f"OrbStack is stopped and did not start within {START_TIMEOUT:g}s of "
                f"`orbctl start` (status {status!r}{': ' + detail if detail else ''}); open "
                f"OrbStack.app to see why"
            )
        time.sleep(0.5)


__all__ = [
    "OPTIONS",
    "Option",
    "add_options",
    "probe",
    "raw_value",
    "required",
    "resolve",
    "settings_from_config",
    "simulator_executable",
]
