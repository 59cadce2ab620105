"""Shared state is written atomically: a reader never sees an empty or torn file.

Each package has one helper (``pytest_orbstack.files.write_json``: pool counters, clone sources,
shared handles, the registry; ``orbsim.files.write_json``: ``state.json``, fault counters,
network state and leases, image notes).  Here several processes rewrite one large file as fast
as they can while other processes read it without any lock, the way ``Supply.remaining`` or
``CloneSources.names`` (and orbsim's lock-free ``state.read``) do: every read must parse and be
one of the versions written.  No root needed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import pytest

WRITERS, READERS, SECONDS = 3, 3, 2.0
#: large enough that a write in place takes several write() calls
PAYLOAD = 200_000


def _writer(helper: str, path: str, ident: int, seconds: float) -> int:
    if helper == "plugin":
        from pytest_orbstack.files import write_json as plugin_write

        def write(p: Path, d: dict[str, object]) -> None:
            plugin_write(p, d)
    else:
        from orbsim.files import write_json as sim_write

        def write(p: Path, d: dict[str, object]) -> None:
            sim_write(p, d)

    n = 0
    stop_at = time.monotonic() + seconds  # from its own start (spawned interpreters start late)
    while n == 0 or time.monotonic() < stop_at:
        write(Path(path), {"writer": ident, "n": n, "pad": "x" * (PAYLOAD + 97 * ident)})
        n += 1
    return n


def _reader(path: str, stop: Any, out: multiprocessing.Queue[tuple[int, list[str]]]) -> None:
    reads, bad = 0, []
    while not stop.is_set() or reads < 50:
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            bad.append("missing")
            continue
        reads += 1
        try:
            data = json.loads(text)
            assert len(data["pad"]) == PAYLOAD + 97 * data["writer"]
        except (ValueError, KeyError, AssertionError) as exc:
            bad.append(f"{type(exc).__name__} on {len(text)} bytes")
    out.put((reads, bad[:5] + ([f"... {len(bad)} in all"] if len(bad) > 5 else [])))


@pytest.mark.parametrize("helper", ["plugin", "orbsim"])
def test_concurrent_writers_never_show_a_reader_a_torn_file(tmp_path: Path, helper: str) -> None:
    path = tmp_path / "shared.json"
    _writer(helper, str(path), 0, 0)  # one version exists before the readers start
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    results: multiprocessing.Queue[tuple[int, list[str]]] = ctx.Queue()
    writers = [
        ctx.Process(target=_writer, args=(helper, str(path), i, SECONDS)) for i in range(WRITERS)
    ]
    readers = [ctx.Process(target=_reader, args=(str(path), stop, results)) for _ in range(READERS)]
    for p in readers + writers:
        p.start()
    for p in writers:
        p.join(120)
        assert p.exitcode == 0
    stop.set()
    got = [results.get(timeout=120) for _ in range(READERS)]
    for p in readers:
        p.join(60)
    assert sum(r for r, _ in got) > 0
    bad = [b for _, bs in got for b in bs]
    assert not bad, bad
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"


@pytest.mark.parametrize("helper", ["plugin", "orbsim"])
def test_a_write_replaces_the_file_never_rewrites_it(tmp_path: Path, helper: str) -> None:
    """The write is a rename of a new file (new inode), so an open reader keeps the old one."""
    path = tmp_path / "state.json"
    _writer(helper, str(path), 1, 0)
    before = os.stat(path).st_ino
    with open(path) as reader:
        if helper == "plugin":
            from pytest_orbstack.files import write_json as plugin_write

            plugin_write(path, {"new": True})
        else:
            from orbsim.files import write_json as sim_write

            sim_write(path, {"new": True})
        assert json.loads(reader.read())["writer"] == 1  # the reader's file is intact
    assert os.stat(path).st_ino != before
    assert json.loads(path.read_text()) == {"new": True}
