"""Many simulator processes at once (pytest-xdist style) keep the state consistent."""

from __future__ import annotations

import json

from orbsim.oplog import count
from tests.orbsim.conftest import Sim, mounts_under, run_many


def test_parallel_create_run_delete(fresh_sim: Sim) -> None:
    sim = fresh_sim
    n = 8
    names = [f"par-{i}" for i in range(n)]
    exe = sim.exe()
    assert run_many([[exe, "create", "debian", m] for m in names], sim.env) == [0] * n
    recs = sim.json("list", "-f", "json")
    assert sorted(r["name"] for r in recs) == names
    assert {r["state"] for r in recs} == {"running"}
    ips = [sim.json("info", m, "-f", "json")["ip4"] for m in names]
    assert len(set(ips)) == n
    script = "echo $(hostname) > me; cat me"
    assert run_many([[exe, "run", "-m", m, "sh", "-c", script] for m in names], sim.env) == [0] * n
    # mixed lifecycle operations at once: stop half, clone the other half
    argvs = [[exe, "stop", m] for m in names[: n // 2]]
    argvs += [[exe, "clone", m, m + "-c"] for m in names[n // 2 :]]
    assert run_many(argvs, sim.env) == [0] * n
    # run auto-starts the stopped ones concurrently (two runs per machine race the start)
    argvs = [[exe, "run", "-m", m, "cat", "me"] for m in names[: n // 2] for _ in range(2)]
    assert run_many(argvs, sim.env) == [0] * n
    st = json.loads((sim.home / "state.json").read_text())
    assert len(st["machines"]) == n + n // 2
    everything = [r["name"] for r in sim.json("list", "-f", "json")]
    assert run_many([[exe, "delete", "-f", m] for m in everything], sim.env) == [0] * len(
        everything
    )
    assert sim.ok("list", "-f", "json").stdout == "[]\n"
    st = json.loads((sim.home / "state.json").read_text())
    assert st["machines"] == {}
    assert sim.holders() == []
    assert mounts_under(sim.home) == []
    assert count(sim.home, "create", ok=True) == n
    assert count(sim.home, "clone", ok=True) == n // 2
    assert count(sim.home, "delete", ok=True) == len(everything)
    leftovers = [p for p in (sim.home / "machines").iterdir()]
    assert leftovers == []
