"""The CLI contract between orbsim and the plugin: every row of the plugin's error table
(``pytest_orbstack.errors._RULES``) is driven out of orbsim for real - by bad input, by the
state of machines, or by orbsim's fault injection - and the plugin must classify orbsim's actual
output as intended.  A row orbsim cannot produce is listed in ``NOT_PRODUCED`` with the reason,
and a new row must go into one of the two tables (``test_every_rule_is_covered``).

Also: the plugin's distro list, reserved names and name rule agree with orbsim's.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orbsim import distros
from pytest_orbstack import spec
from pytest_orbstack.errors import (
    _RULES,
    MachineExistsError,
    MachineNotFoundError,
    OrbctlError,
    OrbStackUnavailableError,
    PermanentError,
    StateError,
    TransientError,
    UnsupportedCommandError,
    classify,
)
from tests.conftest import _sim_unusable_reason, orbsim_executable
from tests.orbsim.conftest import FAULT_VARS


@dataclass(frozen=True)
class Case:
    """How to make orbsim print the text a rule is about."""

    rule: str  # the rule's pattern, exactly as in errors._RULES
    argv: tuple[str, ...]  # "{m}": the module's running machine, "{s}": a stopped one
    expected: type[OrbctlError]
    env: dict[str, str] = field(default_factory=dict)
    exit_code: int = 1


def fail(cmd: str, kind: str) -> dict[str, str]:
    return {"ORBSIM_FAIL": f"{cmd}=1", "ORBSIM_FAIL_KINDS": kind}


CASES = [
    Case(r"(?:machine )?manager is stopping", ("create", "debian", "c-mgr"), TransientError,
         fail("create", "manager")),
    Case(r"cannot transition from \w+ to \w+", ("delete", "-f", "{creating}"), StateError),
    Case(r"operations are in progress", ("start", "{s}"), TransientError, fail("start", "busy")),
    Case(r"make rootfs: fetch index", ("create", "debian", "c-net"), TransientError,
         fail("create", "network")),
    Case(r"make rootfs: download (?:metadata|rootfs)", ("create", "debian", "c-dl"),
         TransientError, fail("create", "download")),
    Case(r"GET (?:index|download) status: 5\d\d", ("create", "debian", "c-5xx"), TransientError,
         fail("create", "download")),
    Case(r"sha256 mismatch for URL", ("create", "debian", "c-sha"), TransientError,
         fail("create", "sha")),
    Case(r"dial tcp: .*(?:i/o timeout|connection refused|no such host)",
         ("create", "debian", "c-dial"), TransientError, fail("create", "network")),
    Case(r"TLS handshake timeout", ("create", "debian", "c-tls"), TransientError,
         fail("create", "tls")),
    Case(r"machine didn't start in \d+s", ("create", "debian", "c-ip"), TransientError,
         fail("create", "ip")),
    Case(r"missing IP address", ("start", "{s}"), TransientError, fail("start", "ip")),
    Case(r"setup: machine crashed on startup", ("create", "debian", "c-crash"), TransientError,
         fail("create", "crash")),
    Case(r"canceled by machine shutdown", ("create", "debian", "c-down"), TransientError,
         fail("create", "shutdown")),
    Case(r"machine did not start: ", ("create", "debian", "c-nostart"), TransientError,
         fail("create", "nostart")),
    Case(r"stop '[^']*': timeout", ("stop", "{m}"), TransientError, fail("stop", "stoptimeout")),
    Case(r"machine not found", ("info", "no-such-machine"), MachineNotFoundError),
    Case(r"machine already exists", ("create", "debian", "{m}"), MachineExistsError),
    Case(r"machine '.*' already exists", ("rename", "{s}", "{m}"), MachineExistsError),
    Case(r"no machines found", ("default",), PermanentError, {"ORBSIM_HOME": "{empty}"}),
    Case(r"invalid machine name", ("create", "debian", "bad_name"), PermanentError),
    Case(r"invalid distro", ("create", "nosuchdistro"), PermanentError),
    Case(r"invalid architecture", ("create", "-a", "sparc", "debian", "c-arch"), PermanentError),
    Case(r"make rootfs: image not found", ("create", "debian:99", "c-v99"), PermanentError),
    Case(r"GET download status: 404", ("create", "debian", "c-404"), PermanentError,
         fail("create", "notfound404")),
    Case(r"cloud-init not supported", ("create", "-c", "/dev/null", "arch", "c-ci"),
         PermanentError),
    Case(r"can't find '_orbstack/config\.v1\.json'", ("import", "/etc/hostname"), PermanentError),
    Case(r"Unknown (?:machine )?configuration key", ("config", "set", "no.such.key", "1"),
         PermanentError),
    Case(r"Unknown machine config key", ("config", "set", "machine.{m}.nope", "1"),
         PermanentError),
    Case(r'unknown command "\w+" for', ("nosuchcommand",), UnsupportedCommandError),
    Case(r"unknown (?:flag|command|shorthand flag)", ("list", "--bogus"), PermanentError),
    Case(r"accepts \d+ arg\(s\)|requires at least \d+ arg", ("info",), PermanentError),
    Case(r"no machines specified", ("restart",), PermanentError),
    Case(r"invalid format", ("list", "-f", "yaml"), PermanentError),
    Case(r"missing value for flag", ("run", "-m"), PermanentError),
    Case(r"orbsim cannot run machines on this host", ("create", "debian", "c-host"),
         OrbStackUnavailableError, {"ORBSIM_CACHE": "{nocache}", "PATH": "/nonexistent"}),
]  # fmt: skip

#: Rules orbsim cannot produce, and why (they are checked against OrbStack's texts in
#: tests/unit/test_errors.py only).
NOT_PRODUCED = {
    r"start VM: timed out waiting for VM to start": "orbsim has no VM to start",
    r"timed out waiting for services to start": "orbsim has no VM services",
    r"VM exited unexpectedly": "orbsim has no VM",
    r"cannot (?:delete|clone|rename) builtin machine": "orbsim has no built-in machines",
    # orbsim follows 2.2, which has per-machine settings; tests/plugin/old_orbctl.py's
    # ``no-settings`` shape answers like an older OrbStack (tests/plugin/test_parity.py).
    r"unknown flag: --(?:cpus|memory|disk|isolated)\b": "orbsim is 2.2: it knows these flags",
    r"Unknown machine config key: (?:cpu|memory_mib|disk_bytes)\b": "orbsim is 2.2: knows them",
}


@dataclass
class Home:
    exe: str
    env: dict[str, str]
    root: Path
    running: str = "cm-run"
    stopped: str = "cm-stopped"
    creating: str = "cm-creating"

    def __call__(
        self, *argv: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.exe, *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            env={**self.env, **(env or {})},
        )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    exe = orbsim_executable()
    reason = _sim_unusable_reason(exe)
    if reason:
        pytest.skip(reason)
    assert exe is not None
    root = tmp_path_factory.mktemp("contract")
    env = {k: v for k, v in os.environ.items() if k not in FAULT_VARS}
    env["ORBSIM_HOME"] = str(root / "home")
    h = Home(exe, env, root)
    for name in (h.running, h.stopped):
        assert h("create", "debian", name).returncode == 0
    assert h("stop", h.stopped).returncode == 0
    # a create that stays "creating" for a while (its client gone, as after a timeout)
    slow = {"ORBSIM_DETACH": "create=1", "ORBSIM_DETACH_MODE": "exit124",
            "ORBSIM_LATENCY": "create=30"}  # fmt: skip
    assert h("create", "debian", h.creating, env=slow).returncode == 124
    yield h
    deadline = time.monotonic() + 120
    while h("list", "-q").stdout.strip() and time.monotonic() < deadline:
        h("delete", "-a", "-f")
        time.sleep(0.5)


def _argv(case: Case, home: Home) -> list[str]:
    subst = {"{m}": home.running, "{s}": home.stopped, "{creating}": home.creating}
    out = []
    for arg in case.argv:
        for key, value in subst.items():
            arg = arg.replace(key, value)
        out.append(arg)
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.rule for c in CASES])
def test_plugin_classifies_what_orbsim_prints(case: Case, home: Home) -> None:
    env = dict(case.env)
    for key, value in env.items():
        if value == "{empty}":
            env[key] = str(home.root / f"empty-{time.monotonic_ns()}")
        if value == "{nocache}":
            env[key] = str(home.root / "no-cache")
    res = home(*_argv(case, home), env=env)
    assert res.returncode == case.exit_code, (res.returncode, res.stderr)
    first = next((line for line in res.stderr.splitlines() if line.strip()), "")
    import re

    assert re.search(case.rule, res.stderr), f"orbsim printed {first!r}, not /{case.rule}/"
    assert "(orbsim" not in res.stderr, res.stderr  # nothing added to OrbStack's text
    got = classify(res.stderr, res.returncode)
    assert got is case.expected, (
        f"{first!r} classified {got.__name__}, meant {case.expected.__name__}"
    )


def test_every_rule_is_covered() -> None:
    rules = [pattern.pattern for pattern, _ in _RULES]
    covered = {c.rule for c in CASES} | set(NOT_PRODUCED)
    assert [r for r in rules if r not in covered] == []
    assert [c for c in covered if c not in rules] == []


def test_create_failures_carry_the_create_prefix(home: Home) -> None:
    for kind in ("network", "ip", "manager", "download", "sha", "crash", "shutdown", "nostart"):
        res = home("create", "debian", "c-pre", env=fail("create", kind))
        assert res.stderr.startswith("[-32098] create 'c-pre': "), (kind, res.stderr)
        assert res.stderr.count("\n") == 1, (kind, res.stderr)  # one line, nothing added


def test_distros_and_names_agree() -> None:
    assert sorted(spec.DISTROS) == sorted(distros.DISTROS)
    assert spec.RESERVED_NAMES == distros.RESERVED
    assert set(spec.ARCHES.values()) <= {"amd64", "arm64", "i386"}
    for token in spec.DISTROS:
        assert distros.lookup(token) is not None
    samples = ["ab", "a1", "orbpt-0badc0-main-test-fn-0-1", "x" * 63, "9lives", "a-b-c"]
    for name in samples:
        if spec._NAME.match(name) and name not in spec.RESERVED_NAMES:
            assert distros.valid_name(name), name  # every name the plugin makes, orbsim takes
    for reserved in spec.RESERVED_NAMES:
        assert not distros.valid_name(reserved)
