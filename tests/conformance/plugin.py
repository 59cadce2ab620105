"""pytest hooks of the conformance suite: the ``--orbctl`` option, the ``reference`` marker, the
per-test verdict from recorded behaviours, the terminal summary (behaviours per contract
section) and the report file.

Loaded from ``tests/conftest.py`` (``pytest_plugins``), so ``--orbctl`` is known however pytest
is started.  Under xdist, workers attach their results to the test reports and the controller
counts them and writes the report.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.harness import Checks, ConformanceFailure, summarize

ENV_ORBCTL = "ORBSTACK_CONFORMANCE_ORBCTL"
CHECKS = pytest.StashKey[Checks]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("orbctl conformance (tests/conformance)")
    group.addoption(
        "--orbctl",
        default=None,
        metavar="PATH",
        help="the orbctl the conformance suite checks (default: $ORBSTACK_CONFORMANCE_ORBCTL, "
        "else this project's orbsim in a throw-away home); on a Mac: --orbctl=orbctl",
    )
    group.addoption(
        "--conformance-report",
        default=None,
        metavar="PATH",
        help="where the conformance report (JSON) is written "
        "(default: .conformance-report.json in the rootdir)",
    )


def orbctl_choice(config: pytest.Config) -> tuple[str | None, bool]:
    """``(executable, is_the_default_orbsim)``; executable None when nothing is found."""
    explicit = config.getoption("orbctl") or os.environ.get(ENV_ORBCTL)
    if explicit:
        path = shutil.which(explicit) if os.sep not in explicit else explicit
        return (str(Path(path).resolve()) if path else None), False
    found = shutil.which("orbsim") or str(Path(sys.executable).with_name("orbsim"))
    return (found if Path(found).exists() else None), True


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "reference(section): the section of docs/orbctl-contract.md a conformance test "
        "checks, e.g. '§2 clone'",
    )
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(Reporter(config), "orbctl-conformance-reporter")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("reference")
        if marker is not None and marker.args:
            item.user_properties.append(("reference", str(marker.args[0])))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    failure: ConformanceFailure | None = None
    try:
        yield
    except ConformanceFailure as exc:  # a failed require(): show the table, not a traceback
        failure = exc
    finally:
        checks = item.stash.get(CHECKS, None)
        if checks is not None:
            item.user_properties.append(("conformance", [r.as_dict() for r in checks.results]))
    if failure is not None:
        pytest.fail(str(failure), pytrace=False)
    if checks is not None and checks.failures:
        pytest.fail(checks.render(), pytrace=False)
    return None


class Reporter:
    """Collects every behaviour checked (from this process or xdist workers)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.results: list[dict[str, str]] = []
        self.tests: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict((k, v) for k, v in report.user_properties if k in ("reference",))
        if "reference" not in props:
            return
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self.tests[report.nodeid] = report.outcome
        if report.when == "teardown" and report.failed:
            self.tests[report.nodeid] = "error"
        if report.when == "call":
            for key, value in report.user_properties:
                if key == "conformance":
                    self.results.extend(value)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.tests:
            return
        tr = terminalreporter
        exe, _ = orbctl_choice(self.config)
        version = _version(exe)
        tr.write_sep("=", "orbctl conformance")
        tr.write_line(f"orbctl under test: {exe} ({version})")
        tr.write_line(
            f"{'section':<24}{'behaviours':>11}{'ok':>6}{'differ':>8}{'tolerated':>11}"
            f"{'not observed':>14}"
        )
        totals = {"total": 0, "ok": 0, "differs": 0, "tolerated": 0, "not observed": 0}
        for section, row in summarize(self.results):
            tr.write_line(
                f"{section:<24}{row['total']:>11}{row.get('ok', 0):>6}"
                f"{row.get('differs', 0):>8}{row.get('tolerated', 0):>11}"
                f"{row.get('not observed', 0):>14}"
            )
            for key in totals:
                totals[key] += row.get(key, 0)
        tr.write_line(
            f"{'total':<24}{totals['total']:>11}{totals['ok']:>6}{totals['differs']:>8}"
            f"{totals['tolerated']:>11}{totals['not observed']:>14}"
        )
        by_top: dict[str, int] = {}
        for section, row in summarize(self.results):
            top = section.split()[0]
            by_top[top] = by_top.get(top, 0) + row["total"]
        tr.write_line("by section: " + ", ".join(f"{k} {n}" for k, n in by_top.items()))
        outcomes: dict[str, int] = {}
        for outcome in self.tests.values():
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        tr.write_line("tests: " + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())))
        path = self._write(exe, version, totals)
        tr.write_line(f"report: {path} (attach it to a bug report; see docs/conformance.md)")

    def _write(self, exe: str | None, version: str, totals: dict[str, int]) -> Path:
        option = self.config.getoption("conformance_report")
        path = Path(option) if option else self.config.rootpath / ".conformance-report.json"
        data = {
            "orbctl": exe,
            "version": version,
            "host": {
                "system": platform.system(),
                "release": platform.release(),
                "machine": platform.machine(),
            },  # fmt: skip
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "totals": totals,
            "sections": dict(summarize(self.results)),
            "tests": self.tests,
            "behaviours": self.results,
        }
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path


def _version(exe: str | None) -> str:
    if exe is None:
        return "not found"
    try:
        proc = subprocess.run(
            [exe, "version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"version unknown: {exc}"
    return " / ".join(line.strip() for line in proc.stdout.splitlines() if line.strip())
