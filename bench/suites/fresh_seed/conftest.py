"""The baseline: the test pattern of the seed project, pyinfra-orbstack 0.11.0
(docs/orbctl-contract.md §13), written in this code base's terms.

Per test, serially: ``orbctl create`` through the seed's retry wrapper
(``execute_orbctl_with_retry``: up to 3 retries, backoff 2, 4, 8 s, retried on stderr keywords,
timeouts and any exception; timeout 180 s for create), wait until ready by polling
``orbctl info NAME -f json`` every 0.5 s until ``record.state == "running"`` with an ``ip4``
(``wait_for_vm_ready``), provision with the same pyinfra deploy
(:func:`pytest_orbstack.deploy.run_deploy`), run the test body, then ``orbctl delete -f NAME``
through the same wrapper (2 retries, timeout 60 s).  No machine is shared between tests or xdist
workers.  Left out: the seed's ``pytest_configure`` image "pre-pull" (which is a file copy,
docs/orbctl-contract.md §13) and orphan sweep - one-off costs that would only add to the
baseline.  With no faults injected the retries never trigger.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterator

import pytest
from checks import DEPLOY

from pytest_orbstack.deploy import run_deploy
from pytest_orbstack.machine import Machine
from pytest_orbstack.options import simulator_executable
from pytest_orbstack.orbctl import CompletedCall, Orbctl

IMAGE = "debian:bookworm"
#: The seed's stderr keywords (``tests/test_utils.py::execute_orbctl_with_retry``).
RETRY_KEYWORDS = (
    "timeout", "connection", "network", "tls", "handshake", "download", "cdn", "http", "https",
    "tcp", "dns", "missing ip address", "didn't start", "setup", "machine",
)  # fmt: skip
_names = itertools.count(1)


class SeedCommandError(Exception):
    pass


def execute_orbctl_with_retry(
    client: Orbctl, args: list[str], *, max_retries: int = 3, timeout: float = 180
) -> CompletedCall:
    """The seed's wrapper: retry when stderr has a keyword, on timeouts and on any exception;
    delay ``2 * 2**attempt`` seconds."""
    for attempt in range(max_retries + 1):
        delay = 2.0 * (2**attempt)
        try:
            call = client.invoke(args, timeout=timeout)
        except Exception:
            if attempt < max_retries:
                time.sleep(delay)
                continue
            raise
        if call.returncode == 0:
            return call
        stderr = call.stderr.decode(errors="replace").lower()
        if any(k in stderr for k in RETRY_KEYWORDS) and attempt < max_retries:
            time.sleep(delay)
            continue
        return call
    raise AssertionError("unreachable")


def wait_for_vm_ready(client: Orbctl, name: str, timeout: float = 60) -> None:
    """Poll ``info -f json`` every 0.5 s until running with an IPv4 address."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        call = client.invoke(["info", name, "-f", "json"], timeout=30)
        if call.returncode == 0:
            data = json.loads(call.stdout)
            record = data.get("record", data)
            if record.get("state") == "running" and data.get("ip4"):
                return
        time.sleep(0.5)
    raise SeedCommandError(f"{name} did not become ready in {timeout:.0f}s")


@pytest.fixture(scope="session")
def seed_client() -> Orbctl:
    exe = os.environ.get("ORBSTACK_ORBCTL") or simulator_executable()
    assert exe, "orbsim is not installed"
    return Orbctl(exe)


@pytest.fixture
def seed_vm(seed_client: Orbctl) -> Iterator[Machine]:
    """A fresh machine per test: create (with retry), wait ready, deploy; deleted afterwards."""
    name = f"pytest-test-{os.getpid()}-{next(_names)}"
    created = execute_orbctl_with_retry(seed_client, ["create", IMAGE, name], timeout=180)
    if created.returncode != 0:
        raise SeedCommandError(f"create {name}: {created.stderr.decode(errors='replace')}")
    try:
        wait_for_vm_ready(seed_client, name)
        machine = Machine(name=name, client=seed_client)
        if DEPLOY:
            run_deploy([machine], DEPLOY)
        yield machine
    finally:
        execute_orbctl_with_retry(seed_client, ["delete", "-f", name], max_retries=2, timeout=60)
