"""Fixtures of the conformance suite.

``orbctl`` is the command under test (``--orbctl=PATH``, else ``$ORBSTACK_CONFORMANCE_ORBCTL``,
else this project's ``orbsim`` in a throw-away ``ORBSIM_HOME``).  Every machine the suite makes
is named ``orbconf-<random>-<label>-<n>``; at the end it deletes those names and no others, so
it can run against the OrbStack a developer uses every day.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conformance.harness import ORBSIM_KNOBS, Checks, OrbctlUnderTest, reference_of
from tests.conformance.plugin import CHECKS, orbctl_choice

#: The default user the suite asks for with ``create -u`` (a valid name on every distro).
USER = "confuser"
#: The image of the suite's machines and what OrbStack reports for it (contract §5).
IMAGE = "debian:12"
IMAGE_JSON = ("debian", "bookworm")


@pytest.fixture(scope="session")
def orbctl(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OrbctlUnderTest]:
    exe, default = orbctl_choice(request.config)
    if exe is None:
        pytest.skip("no orbctl to check: pass --orbctl=PATH (on a Mac: --orbctl=orbctl)")
    env = {k: v for k, v in os.environ.items() if k not in ORBSIM_KNOBS}
    if default:  # this project's simulator: its own throw-away home
        env["ORBSIM_HOME"] = str(tmp_path_factory.mktemp("conformance-orbsim-home"))
    under_test = OrbctlUnderTest(exe, env, f"orbconf-{secrets.token_hex(3)}")
    status = under_test("status", timeout=60)
    if status.stdout.strip() != "Running":
        reason = status.first_err or status.stdout.strip() or f"exit {status.returncode}"
        pytest.skip(f"{exe} status is not Running ({reason}): start OrbStack first")
    yield under_test
    _delete_ours(under_test)


def _delete_ours(orbctl: OrbctlUnderTest, timeout: float = 300) -> None:
    """Delete this run's machines (waiting out creates that are still going on)."""
    deadline = time.monotonic() + timeout
    while True:
        names = sorted(orbctl.records())
        if not names:
            return
        orbctl("delete", "-f", *names, timeout=300)
        if time.monotonic() > deadline:
            left = sorted(orbctl.records())
            if left:
                raise AssertionError(f"conformance machines left behind: {left}")
            return
        time.sleep(1)


@pytest.fixture
def conf(request: pytest.FixtureRequest) -> Checks:
    """The behaviours this test checks, recorded with their contract section."""
    checks = Checks(test=request.node.nodeid, section=reference_of(request.node))
    request.node.stash[CHECKS] = checks
    return checks


@pytest.fixture(scope="session")
def main(orbctl: OrbctlUnderTest) -> str:
    """One ``debian:12`` machine with default user ``confuser``, shared by the suite; tests that
    stop it start it again."""
    name = orbctl.name("main")
    call = orbctl("create", "-u", USER, IMAGE, name, timeout=900)
    if call.returncode != 0:
        pytest.fail(f"cannot create the suite's machine: {call.shown}\n{call.stderr}")
    return name


@pytest.fixture
def running(orbctl: OrbctlUnderTest, main: str) -> str:
    """``main``, running."""
    if orbctl.state(main) != "running":
        call = orbctl("start", main)
        assert call.returncode == 0, call.stderr
    return main


@pytest.fixture(scope="session")
def stopped_clone(orbctl: OrbctlUnderTest, main: str) -> str:
    """A stopped clone of ``main`` (shared: clone sources and disposable machines)."""
    name = orbctl.name("clone")
    call = orbctl("clone", main, name, timeout=600)
    if call.returncode != 0:
        pytest.fail(f"cannot clone the suite's machine: {call.shown}\n{call.stderr}")
    return name


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    """A directory under the host's temp dir (on a Mac, /private/var/... is shared with
    machines unchanged, contract §2 push/pull)."""
    return tmp_path
