"""The conformance suite's plumbing: the ``orbctl`` under test, and checks that record
expected-vs-got per behaviour.

Nothing here knows whether the ``orbctl`` is OrbStack or orbsim.  Every call is an argv list
with ``stdin=DEVNULL`` (no TTY: OrbStack's non-interactive behaviour, as the plugin uses it) and
captured output.  A check records one *behaviour* of the contract (docs/orbctl-contract.md): its
section, what the contract expects, what the ``orbctl`` did, and the command that showed it.
A test fails at its end if any of its behaviours differ, with all the differences listed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest

from orbsim.faults import BEHAVIOUR_VARS

ORBSIM_KNOBS = BEHAVIOUR_VARS  # orbsim's own list of behaviour switches
SECTION = re.compile(r"^§(\d+)(?:\s+(.*))?$")


@dataclass(frozen=True)
class Call:
    """One finished ``orbctl`` invocation."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def shown(self) -> str:
        args = " ".join(_quote(a) for a in self.argv[1:])
        return f"orbctl {args} -> exit {self.returncode}"

    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def first_err(self) -> str:
        for line in self.stderr.splitlines():
            if line.strip():
                return line.strip()
        return ""


def _quote(arg: str) -> str:
    return arg if arg and re.fullmatch(r"[\w@%+=:,./-]+", arg) else repr(arg)


class OrbctlUnderTest:
    """Runs the ``orbctl`` being checked (OrbStack's, orbsim, or anything else)."""

    def __init__(self, executable: str, env: Mapping[str, str], prefix: str) -> None:
        self.executable = executable
        self.env = dict(env)
        self.prefix = prefix
        self._seq = 0

    def name(self, label: str) -> str:
        """A fresh machine name of this run (the suite never touches names without it)."""
        self._seq += 1
        return f"{self.prefix}-{label}-{self._seq}"

    def owns(self, name: str) -> bool:
        return name.startswith(self.prefix + "-")

    def __call__(
        self,
        *args: str,
        timeout: float = 300,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> Call:
        argv = [self.executable, *args]
        proc = subprocess.run(
            argv,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env={**self.env, **(env or {})},
            cwd=cwd,
        )
        return Call(
            argv,
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )

    def spawn(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a call in its own session (so it can be killed as a group, like a timeout)."""
        return subprocess.Popen(
            [self.executable, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**self.env, **(env or {})},
            start_new_session=True,
        )

    @staticmethod
    def kill(proc: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.communicate()

    # -- small readers ----------------------------------------------------------------------

    def records(self) -> dict[str, dict[str, Any]]:
        """This run's machines from ``list -f json`` (others are never looked at)."""
        call = self("list", "-f", "json")
        if call.returncode != 0:
            raise AssertionError(f"{call.shown}: {call.stderr}")
        data = call.json() or []
        return {r["name"]: r for r in data if isinstance(r, dict) and self.owns(str(r["name"]))}

    def info(self, name: str) -> dict[str, Any] | None:
        call = self("info", "-f", "json", name)
        if call.returncode != 0:
            return None
        data: dict[str, Any] = call.json()
        return data

    def state(self, name: str) -> str | None:
        data = self.info(name)
        if data is None:
            return None
        rec = data.get("record", data)
        return str(rec.get("state"))

    def wait(
        self, name: str, until: Callable[[dict[str, Any] | None], bool], timeout: float
    ) -> dict[str, Any] | None:
        """Poll ``info`` until ``until(info)`` holds (``info`` is None once the machine is gone);
        return the last info either way."""
        deadline = time.monotonic() + timeout
        data = self.info(name)
        while not until(data) and time.monotonic() < deadline:
            time.sleep(0.2)
            data = self.info(name)
        return data


@dataclass
class Result:
    """One behaviour checked: the unit of the suite's counts and of its report."""

    section: str
    behaviour: str
    expected: str
    got: str
    outcome: str  # "ok" | "differs" | "tolerated" | "not observed"
    command: str = ""
    note: str = ""
    test: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class ConformanceFailure(AssertionError):
    """A test whose behaviours differ from the contract (message: the differences)."""


@dataclass
class Checks:
    """The behaviours one test checks (fixture ``conf``)."""

    test: str
    section: str
    results: list[Result] = field(default_factory=list)

    def _add(
        self,
        behaviour: str,
        ok: bool,
        expected: str,
        got: str,
        *,
        section: str | None,
        call: Call | None,
        outcome: str | None = None,
        note: str = "",
    ) -> bool:
        res = Result(
            section=section or self.section,
            behaviour=behaviour,
            expected=expected,
            got=got,
            outcome=outcome or ("ok" if ok else "differs"),
            command=call.shown if call is not None else "",
            note=note,
            test=self.test,
        )
        self.results.append(res)
        return ok

    def equal(
        self,
        behaviour: str,
        got: object,
        expected: object,
        *,
        section: str | None = None,
        call: Call | None = None,
    ) -> bool:
        return self._add(
            behaviour, got == expected, _show(expected), _show(got), section=section, call=call
        )

    def that(
        self,
        behaviour: str,
        ok: bool,
        *,
        expected: str,
        got: object,
        section: str | None = None,
        call: Call | None = None,
    ) -> bool:
        return self._add(behaviour, bool(ok), expected, _show(got), section=section, call=call)

    def match(
        self,
        behaviour: str,
        got: str,
        pattern: str,
        *,
        section: str | None = None,
        call: Call | None = None,
    ) -> bool:
        ok = re.search(pattern, got) is not None
        return self._add(
            behaviour, ok, f"matches /{pattern}/", _show(got), section=section, call=call
        )

    def error(
        self,
        behaviour: str,
        call: Call,
        line: str,
        *,
        exit_code: int = 1,
        section: str | None = None,
        classified: type[BaseException] | None = None,
    ) -> bool:
        """A failing command: its exit code, its first stderr line (exactly ``line``, or the
        regex ``line`` when it starts with ``^``), empty stdout, and - when ``classified`` is
        given - the plugin's classification of that stderr (``pytest_orbstack.errors``)."""
        exact = not line.startswith("^")
        first = call.first_err
        ok_text = first == line if exact else re.search(line, first) is not None
        expected = f"exit {exit_code}, stderr {'' if exact else 'matching '}{line!r}"
        got = f"exit {call.returncode}, stderr {first!r}"
        if call.stdout.strip():
            got += f", stdout {call.stdout.strip()[:120]!r}"
        ok = ok_text and call.returncode == exit_code and not call.stdout.strip()
        self._add(behaviour, ok, expected, got, section=section, call=call)
        if classified is not None:
            from pytest_orbstack.errors import classify

            cls = classify(call.stderr, call.returncode)
            self._add(
                f"the plugin classifies it as {classified.__name__}",
                issubclass(cls, classified),
                classified.__name__,
                cls.__name__,
                section="§9",
                call=call,
            )
        return ok

    def tolerate(
        self,
        behaviour: str,
        got: object,
        accepted: Mapping[str, bool],
        *,
        section: str | None = None,
        call: Call | None = None,
    ) -> bool:
        """Where the contract is unsure (inferred): any of ``accepted`` (description -> holds)
        passes; which one held is recorded, so a report from OrbStack settles the question."""
        held = [desc for desc, ok in accepted.items() if ok]
        expected = " or ".join(accepted)
        return self._add(
            behaviour,
            bool(held),
            expected,
            _show(got),
            section=section,
            call=call,
            outcome="tolerated" if held else "differs",
            note=f"observed: {held[0]}" if held else "",
        )

    def not_observed(self, behaviour: str, why: str, *, section: str | None = None) -> None:
        self._add(
            behaviour, True, "(observable)", "", section=section, call=None,
            outcome="not observed", note=why,
        )  # fmt: skip

    def require(self, behaviour: str, call: Call, *, section: str | None = None) -> Call:
        """A command the rest of the test depends on must succeed; otherwise stop here."""
        if not self._add(
            behaviour,
            call.returncode == 0,
            "exit 0",
            f"exit {call.returncode}, stderr {call.first_err!r}",
            section=section,
            call=call,
        ):
            raise ConformanceFailure(self.render())
        return call

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if r.outcome == "differs"]

    def render(self) -> str:
        bad = self.failures
        lines = [
            f"{len(bad)} of {len(self.results)} behaviours differ from the contract "
            "(docs/orbctl-contract.md):"
        ]
        for r in bad:
            lines.append(f"  {r.section}: {r.behaviour}")
            lines.append(f"      expected: {r.expected}")
            lines.append(f"      got:      {r.got}")
            if r.command:
                lines.append(f"      command:  {r.command}")
        return "\n".join(lines)


def _show(value: object) -> str:
    if isinstance(value, str):
        return repr(value) if len(value) < 300 else repr(value[:300] + "...")
    return repr(value)


def section_key(section: str) -> tuple[int, str]:
    m = SECTION.match(section)
    return (int(m.group(1)), m.group(2) or "") if m else (99, section)


def reference_of(item: pytest.Item) -> str:
    marker = item.get_closest_marker("reference")
    if marker is None or not marker.args:
        raise pytest.UsageError(f"{item.nodeid}: conformance tests need @pytest.mark.reference")
    section = str(marker.args[0])
    if not SECTION.match(section):
        raise pytest.UsageError(f"{item.nodeid}: reference {section!r} is not like '§4 info'")
    return section


def summarize(results: Sequence[Mapping[str, str]]) -> list[tuple[str, dict[str, int]]]:
    """Counts per section, in section order: ``[(section, {outcome: n, "total": n})]``."""
    table: dict[str, dict[str, int]] = {}
    for r in results:
        row = table.setdefault(r["section"], {"total": 0})
        row["total"] += 1
        row[r["outcome"]] = row.get(r["outcome"], 0) + 1
    return sorted(table.items(), key=lambda kv: section_key(kv[0]))
