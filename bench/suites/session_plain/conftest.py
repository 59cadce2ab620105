"""The plain reference for the session-overhead benchmark: no plugin (``-p no:orbstack``), one
machine made by a session fixture with the same ``orbctl`` calls the plugin makes for a session
machine (create, ``info`` until running with an IPv4, ``run true``, delete).  The seconds spent
making and deleting it are written to ``$BENCH_LIFECYCLE``, so they can be subtracted."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from pytest_orbstack.machine import Machine
from pytest_orbstack.options import simulator_executable
from pytest_orbstack.orbctl import Orbctl


@pytest.fixture(scope="session")
def plain_vm() -> Iterator[Machine]:
    exe = simulator_executable()
    assert exe, "orbsim is not installed"
    client = Orbctl(exe)
    name = f"plain-{os.getpid()}"
    started = time.perf_counter()
    client.create("debian:bookworm", name)
    while not ((info := client.info(name)).state == "running" and info.ip4):
        time.sleep(0.1)
    assert client.run(name, ["true"], workdir="").returncode == 0
    made = time.perf_counter() - started
    yield Machine(name=name, client=client)
    started = time.perf_counter()
    client.delete(name)
    removed = time.perf_counter() - started
    path = os.environ.get("BENCH_LIFECYCLE")
    if path:
        with open(path, "w") as fh:
            json.dump({"create": made, "delete": removed}, fh)
