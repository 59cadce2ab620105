"""Per-test trace for the session-overhead benchmark (active only with ``$BENCH_TRACE``).

Around each test's whole protocol (setup, call, teardown) it records the wall clock and the size
of the simulator's operation log, ``$ORBSIM_HOME/ops.log`` (one line per ``orbctl`` invocation,
appended when the invocation ends).  At the end it writes ``[[nodeid, t0, t1, size0, size1],
...]`` to ``$BENCH_TRACE``; ``bench/session_overhead.py`` attributes log lines to tests by byte
offset.  Two ``stat`` calls per test: the same cost in every suite it is used in.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator

import pytest

TRACE = os.environ.get("BENCH_TRACE")
_OPS = os.path.join(os.environ.get("ORBSIM_HOME", ""), "ops.log")
_marks: list[tuple[str, float, float, int, int]] = []


def _size() -> int:
    try:
        return os.stat(_OPS).st_size
    except FileNotFoundError:
        return 0


if TRACE:

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(item: pytest.Item, nextitem: object) -> Generator[None, object]:
        t0, s0 = time.perf_counter(), _size()
        try:
            return (yield)
        finally:
            _marks.append((item.nodeid, t0, time.perf_counter(), s0, _size()))

    def pytest_sessionfinish(session: pytest.Session) -> None:
        with open(TRACE, "w") as fh:
            json.dump(_marks, fh)
