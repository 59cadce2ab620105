"""What the fresh-machine suites test, shared by the plugin suite and the seed-pattern baseline,
so both run exactly the same test bodies (and log how long each took)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pytest_orbstack.machine import Machine

#: The deploy every fresh machine is provisioned with (set by bench/fresh_machines.py; empty:
#: fresh machines without a deploy).
DEPLOY = (
    os.environ.get(
        "BENCH_DEPLOY", str(Path(__file__).resolve().parents[2] / "examples/deploys/webapp.py")
    )
    or None
)
#: Tests per suite (parametrised).
TESTS = int(os.environ.get("BENCH_TESTS", "16"))


@contextmanager
def timed_body() -> Iterator[None]:
    """Append this test body's duration to ``$BENCH_BODY_LOG`` (one JSON line)."""
    started = time.perf_counter()
    yield
    seconds = time.perf_counter() - started
    path = os.environ.get("BENCH_BODY_LOG")
    if path:
        line = json.dumps({"seconds": seconds, "pid": os.getpid(), "end": time.time()}) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def check_provisioned(vm: Machine, i: int) -> None:
    """The body of test ``i``: the role's results are there, and the test changes its machine
    (which is why each test needs a fresh one)."""
    if DEPLOY is None:
        check_fresh(vm, i)
        return
    with timed_body():
        assert vm.run(["id", "-u", "webapp"]).ok
        stat = vm.run(["stat", "-c", "%a %U %G", "/etc/webapp/webapp.conf"], user="root")
        assert stat.stdout == "640 root webapp\n"
        status = vm.run(["webapp-status"], user="webapp", check=True)
        assert json.loads(status.stdout) == {"port": 8080, "workers": 2}
        marker = "/etc/webapp/bench-marker"
        vm.run(
            f"test ! -e {marker} && echo {i} > {marker} && test $(cat {marker}) = {i}",
            user="root",
            check=True,
        )


def check_fresh(vm: Machine, i: int) -> None:
    """The body of test ``i`` without a deploy: the machine is new, and the test changes it."""
    with timed_body():
        marker = "/var/tmp/bench-marker"
        vm.run(f"test ! -e {marker} && echo {i} > {marker}", user="root", check=True)
        assert vm.run(["cat", marker]).stdout == f"{i}\n"
