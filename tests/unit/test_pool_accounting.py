"""The shared pool's accounting (supply.py ``SharedPool``) over a run's shared directory: demand
counted once per run, reserved until none is left, machines offered and claimed once.

No machines: the pool only keeps counters and names in files.  The concurrency tests use
several real processes, as xdist workers would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from pytest_orbstack.coordination import SharedDir
from pytest_orbstack.supply import SharedPool

KEY = "fabc123-def456"


@pytest.fixture
def shared(tmp_path: Path) -> SharedDir:
    return SharedDir(tmp_path / "run")


@pytest.fixture
def pool(shared: SharedDir) -> SharedPool:
    return SharedPool(shared)


def reserve_all(pool: SharedPool, key: str = KEY, *, ahead: bool = False) -> int:
    n = 0
    while pool.reserve(key, ahead=ahead):
        n += 1
        assert n < 10_000, "reserve never ran out"
    return n


# -- demand ------------------------------------------------------------------------------------


def test_reserve_until_demand_is_exhausted(pool: SharedPool) -> None:
    pool.init_demand(KEY, 3)
    assert [pool.reserve(KEY) for _ in range(5)] == [True, True, True, False, False]


def test_nothing_is_reserved_without_counted_demand(pool: SharedPool) -> None:
    assert pool.reserve(KEY) is False
    assert pool.reserve(KEY, ahead=True) is False
    assert pool.in_flight(KEY) == 0


def test_zero_demand_reserves_nothing(pool: SharedPool) -> None:
    pool.init_demand(KEY, 0)
    assert pool.reserve(KEY) is False


def test_demand_is_counted_once_per_run(shared: SharedDir) -> None:
    """Every worker counts demand after collection; only the first count may stand, or a late
    worker would reset the counter and the pool would prepare machines nobody needs."""
    first, late = SharedPool(shared), SharedPool(shared)  # two workers, one shared directory
    first.init_demand(KEY, 4)
    assert first.reserve(KEY) and first.reserve(KEY)
    late.init_demand(KEY, 4)
    late.init_demand(KEY, 100)
    assert reserve_all(late) == 2


def test_keys_are_counted_separately(pool: SharedPool) -> None:
    pool.init_demand("a", 1)
    pool.init_demand("b", 2)
    assert reserve_all(pool, "a") == 1
    assert reserve_all(pool, "b") == 2


# -- in flight ---------------------------------------------------------------------------------


def test_ahead_counts_in_flight(pool: SharedPool) -> None:
    pool.init_demand(KEY, 5)
    assert pool.reserve(KEY, ahead=True)
    assert pool.reserve(KEY, ahead=True)
    assert pool.reserve(KEY)  # a test making its own machine: not on its way to anyone
    assert pool.in_flight(KEY) == 2


def test_settle_and_offer_take_machines_off_the_way(pool: SharedPool) -> None:
    pool.init_demand(KEY, 5)
    for _ in range(3):
        pool.reserve(KEY, ahead=True)
    pool.offer(KEY, "orbpt-r-f-1")  # prepared and offered
    assert pool.in_flight(KEY) == 2
    pool.settle(KEY)  # preparation failed
    assert pool.in_flight(KEY) == 1
    assert reserve_all(pool) == 2, "settling must not give the demand back"


def test_in_flight_never_goes_negative(pool: SharedPool) -> None:
    pool.init_demand(KEY, 1)
    pool.settle(KEY)
    pool.offer(KEY, "orbpt-x")
    assert pool.in_flight(KEY) == 0
    assert pool.reserve(KEY, ahead=True)
    assert pool.in_flight(KEY) == 1


# -- offer and claim ---------------------------------------------------------------------------


def _offer_in_order(pool: SharedPool, names: list[str]) -> None:
    for name in names:
        pool.offer(KEY, name)
        time.sleep(0.02)  # distinct modification times on coarse-clock filesystems


def test_claim_takes_the_oldest_first(pool: SharedPool) -> None:
    names = ["orbpt-c", "orbpt-a", "orbpt-b"]  # not alphabetical: order of offering counts
    _offer_in_order(pool, names)
    assert [pool.claim(KEY) for _ in range(4)] == [*names, None]


def test_claim_by_name(pool: SharedPool) -> None:
    _offer_in_order(pool, ["orbpt-a", "orbpt-b"])
    assert pool.claim(KEY, "orbpt-b") == "orbpt-b"
    assert pool.claim(KEY, "orbpt-b") is None  # a machine is handed out once
    assert pool.claim(KEY, "orbpt-zzz") is None
    assert pool.claim(KEY) == "orbpt-a"


def test_claim_from_empty_pool(pool: SharedPool) -> None:
    assert pool.claim(KEY) is None
    assert pool.claim(KEY, "orbpt-a") is None


def test_claim_only_from_its_own_key(pool: SharedPool) -> None:
    pool.offer("a", "orbpt-a1")
    assert pool.claim("b") is None
    assert pool.claim("b", "orbpt-a1") is None
    assert pool.claim("a") == "orbpt-a1"


def test_leftovers_across_keys(pool: SharedPool) -> None:
    pool.offer("a", "orbpt-a1")
    pool.offer("a", "orbpt-a2")
    pool.offer("b", "orbpt-b1")
    assert pool.leftovers() == ["orbpt-a1", "orbpt-a2", "orbpt-b1"]
    pool.claim("a", "orbpt-a1")
    pool.claim("b")
    assert pool.leftovers() == ["orbpt-a2"]


def test_leftovers_empty(pool: SharedPool) -> None:
    assert pool.leftovers() == []


def test_another_worker_claims_what_one_offered(shared: SharedDir) -> None:
    SharedPool(shared).offer(KEY, "orbpt-shared")
    assert SharedPool(shared).claim(KEY) == "orbpt-shared"


# -- several processes -------------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from pytest_orbstack.coordination import SharedDir
    from pytest_orbstack.supply import SharedPool

    run, key, action, go = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
    pool = SharedPool(SharedDir(Path(run)))
    pool.init_demand(key, int(sys.argv[5]))
    go.with_name(f"ready-{sys.argv[6]}").touch()
    deadline = time.monotonic() + 60
    while not go.exists() and time.monotonic() < deadline:  # start together
        time.sleep(0.0005)
    got = []
    if action == "reserve":
        n = 0
        while pool.reserve(key, ahead=n % 2 == 0):
            n += 1
            got.append(n)
            if n % 2 == 1:
                pool.settle(key)
    else:
        while (name := pool.claim(key)) is not None:
            got.append(name)
    print(json.dumps(got))
    """
)


def run_workers(
    shared: SharedDir, tmp_path: Path, action: str, total: int, processes: int = 4
) -> list[list[object]]:
    go = tmp_path / "go"
    argv = [sys.executable, "-c", WORKER, str(shared.path), KEY, action, str(go), str(total)]
    procs = [
        subprocess.Popen([*argv, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(processes)
    ]
    # release them together once all are imported and ready, so that they really overlap
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < processes and time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.005)
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    return results


def test_concurrent_reservers_never_exceed_the_demand(shared: SharedDir, tmp_path: Path) -> None:
    """Four workers reserving at once (half of them ahead, settled at once) take exactly the
    counted demand between them: never more (machines nobody needs), never less."""
    total = 400
    results = run_workers(shared, tmp_path, "reserve", total)
    counts = [len(r) for r in results]
    assert sum(counts) == total, f"per process: {counts}"
    pool = SharedPool(shared)
    assert pool.reserve(KEY) is False
    assert pool.in_flight(KEY) == 0


def test_concurrent_claimers_get_each_machine_once(shared: SharedDir, tmp_path: Path) -> None:
    pool = SharedPool(shared)
    offered = [f"orbpt-m{i:03d}" for i in range(60)]
    for name in offered:
        pool.offer(KEY, name)
    results = run_workers(shared, tmp_path, "claim", 0)
    claimed = Counter(name for r in results for name in r)
    twice = sorted(name for name, n in claimed.items() if n > 1)
    assert not twice, f"handed out more than once: {twice}"
    assert sorted(claimed) == offered
    assert pool.leftovers() == []


def test_pace_counts_test_time_not_the_wait_for_a_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The automatic depth divides preparation time by test time: a worker that waited for
    its machine must not read the wait as a slow test (a starved pool would shrink itself)."""
    from pytest_orbstack import supply

    now = [100.0]
    monkeypatch.setattr(supply.time, "monotonic", lambda: now[0])
    pace = supply._Pace()
    pace.taken()
    now[0] += 3.0  # waited 3 s for the first machine
    pace.handed()
    now[0] += 0.5  # the test ran 0.5 s
    pace.taken()
    now[0] += 4.0  # waited 4 s for the next one
    pace.handed()
    now[0] += 0.5
    pace.taken()
    assert pace.interval == pytest.approx(0.5)
