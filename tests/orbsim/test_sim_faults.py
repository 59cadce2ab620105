"""Latency and fault injection: determinism, failure texts, hang and detach."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.orbsim.conftest import Sim


def _creates(sim: Sim, n: int, env: dict[str, str]) -> list[tuple[int, str]]:
    out = []
    for i in range(n):
        res = sim("create", "debian", f"f{i}", env=env)
        out.append((res.returncode, res.stderr))
    return out


def test_same_seed_same_sequence(sim_factory, fresh_sim: Sim) -> None:  # type: ignore[no-untyped-def]
    env = {"ORBSIM_FAIL": "create=0.5", "ORBSIM_SEED": "1234"}
    first = _creates(fresh_sim, 6, env)
    other = sim_factory.new()
    second = _creates(other, 6, env)
    assert first == second
    codes = [c for c, _ in first]
    assert 0 in codes and 1 in codes, "seed 1234 should give both outcomes in 6 draws"
    for code, err in first:
        if code:
            assert err.startswith("[-32098] create 'f")
            assert "i/o timeout" in err or "(missing IP address)" in err, err
    # a failed create leaves no machine; the operation log records the fault
    names = {r["name"] for r in fresh_sim.json("list", "-f", "json")}
    assert names == {f"f{i}" for i, (c, _) in enumerate(first) if c == 0}
    faults = [op["fault"] for op in fresh_sim.ops() if op["cmd"] == "create"]
    assert [f is not None for f in faults] == [c != 0 for c in codes]
    other("delete", "-a", "-f")


def test_fail_kinds_and_latency(fresh_sim: Sim) -> None:
    sim = fresh_sim
    res = sim(
        "create", "debian", "k1", env={"ORBSIM_FAIL": "create=1", "ORBSIM_FAIL_KINDS": "network"}
    )
    assert res.stderr == (
        "[-32098] create 'k1': make rootfs: fetch index: get index: Get "
        '"https://cdn-images.orbstack.dev/streams/v1/images.json": dial tcp: lookup '
        "cdn-images.orbstack.dev: i/o timeout\n"
    )
    res = sim("create", "debian", "k1", env={"ORBSIM_FAIL": "create=1", "ORBSIM_FAIL_KINDS": "ip"})
    assert (
        res.stderr
        == "[-32098] create 'k1': setup: machine didn't start in 30s (missing IP address)\n"
    )
    assert sim.state("k1") is None
    sim.create("k1")
    sim.ok("stop", "k1")
    res = sim("start", "k1", env={"ORBSIM_FAIL": "start=1", "ORBSIM_FAIL_KINDS": "busy"})
    assert res.stderr == "[-32098] cannot start: operations are in progress: clone\n"
    assert sim.state("k1") == "stopped"
    # run never fails unless named explicitly; latency applies
    assert sim("run", "-m", "k1", "true", env={"ORBSIM_FAIL": "*=1"}).returncode == 0
    t0 = time.monotonic()
    sim.ok("run", "-m", "k1", "true", env={"ORBSIM_LATENCY": "run=0.6"})
    assert time.monotonic() - t0 >= 0.6
    assert sim("run", "-m", "k1", "true", env={"ORBSIM_FAIL": "run=1"}).returncode == 1
    off = {"ORBSIM_FAIL": "create=1", "ORBSIM_FAULTS_OFF": "1"}
    assert sim("create", "debian", "k2", env=off).returncode == 0
    res = sim("create", "ubuntu", "k3", env={"ORBSIM_PERMANENT": "create=image"})
    assert "image not found: {ubuntu resolute amd64 default}" in res.stderr
    assert sim("create", "ubuntu", "k3", env={"ORBSIM_PERMANENT": "create=image"}).returncode == 0


def test_hang_is_killed_by_timeout(fresh_sim: Sim) -> None:
    sim = fresh_sim
    with pytest.raises(subprocess.TimeoutExpired):
        sim("create", "debian", "h1", env={"ORBSIM_HANG": "create=1"}, timeout=3)
    # the killed create left nothing behind (a create whose process died is deleted)
    assert sim.ok("list", "-q").stdout == ""
    assert sim.holders() == []
    (op,) = [o for o in sim.ops() if o["cmd"] == "create"]
    assert (op["rc"], op["fault"]) == (None, "hang")
    assert sim("create", "debian", "h1").returncode == 0


@pytest.mark.parametrize("mode", ["hang", "exit124"])
def test_detach_machine_appears_later(fresh_sim: Sim, mode: str) -> None:
    sim = fresh_sim
    # The create goes on for 6 s after its client gave up (1 s): time enough, even on a loaded
    # host, to see it `creating` and refused below before it completes.
    env = {"ORBSIM_DETACH": "create=1", "ORBSIM_DETACH_MODE": mode, "ORBSIM_LATENCY": "create=6"}
    if mode == "hang":
        with pytest.raises(subprocess.TimeoutExpired):
            sim("create", "debian", "d1", env=env, timeout=1)
    else:
        assert sim("create", "debian", "d1", env=env).returncode == 124
    assert sim.state("d1") == "creating"
    res = sim("create", "debian", "d1")
    assert res.stderr == "[-32098] create 'd1': machine already exists: 'd1'\n"
    res = sim("delete", "-f", "d1")
    assert res.stderr == "[-32098] cannot transition from creating to deleting\n"
    assert sim.wait_state("d1", "running", 60) == "running"
    assert sim.ok("run", "-m", "d1", "hostname").stdout == "d1\n"
    ops = [o for o in sim.ops() if o["cmd"] == "create" and o["fault"] == "detach"]
    assert len(ops) == 1 and ops[0]["completed"] is True


@pytest.mark.parametrize("mode", ["continue", "discard"])
def test_killed_create(fresh_sim: Sim, mode: str) -> None:
    """By default (as on OrbStack) a create whose client is killed goes on in its server;
    ``ORBSIM_KILLED_CREATE=discard`` is the old behaviour: the half-made machine is removed."""
    sim = fresh_sim
    env = {"ORBSIM_LATENCY": "create=3"}
    if mode == "discard":
        env["ORBSIM_KILLED_CREATE"] = "discard"
    with pytest.raises(subprocess.TimeoutExpired):
        sim("create", "debian", "kc", env=env, timeout=1)
    if mode == "discard":
        assert sim.state("kc") is None
        assert sim("create", "debian", "kc").returncode == 0
        return
    assert sim.state("kc") == "creating"
    res = sim("create", "debian", "kc")
    assert res.stderr == "[-32098] create 'kc': machine already exists: 'kc'\n"
    assert sim.wait_state("kc", "running", 60) == "running"
    (op,) = [o for o in sim.ops() if o["cmd"] == "create" and o.get("server")]
    assert (op["rc"], op["completed"]) == (None, True)


def test_realistic_latency_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    from orbsim import faults

    for var in ("ORBSIM_LATENCY_SCALE", "ORBSIM_FAULTS_OFF"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ORBSIM_LATENCY", "realistic")
    assert {c: faults.latency(c) for c in faults.REALISTIC_LATENCY} == faults.REALISTIC_LATENCY
    assert faults.REALISTIC_LATENCY["create"] >= 10  # tens of seconds on a Mac, not 0.2
    monkeypatch.setenv("ORBSIM_LATENCY", "realistic,create=40")
    assert (faults.latency("create"), faults.latency("clone")) == (40.0, 0.5)
    monkeypatch.setenv("ORBSIM_LATENCY_SCALE", "0.1")
    assert faults.latency("start") == pytest.approx(0.15)


def test_create_failure_is_one_line_with_the_create_prefix(fresh_sim: Sim) -> None:
    res = fresh_sim("create", "debian", "p1", env={"ORBSIM_FAIL": "create=1",
                                                    "ORBSIM_FAIL_KINDS": "nostart"})  # fmt: skip
    assert res.stderr == "[-32098] create 'p1': start: machine did not start: p1 - stopped\n"


def test_wedge_after_n_machines_is_for_good(fresh_sim: Sim) -> None:
    """``ORBSIM_WEDGE_AFTER=2`` (contract §16, orbstack#2688): two machines are made and work;
    then every create fails with 2.2.3's missing-IP text and a later clone, made fine, cannot
    start; neither deleting machines nor stopping and starting "OrbStack" clears it."""
    sim = fresh_sim
    env = {"ORBSIM_WEDGE_AFTER": "2", "ORBSIM_WEDGE_DELAY": "0.2"}
    first = sim.name("w")
    assert sim("create", "debian", first, env=env).returncode == 0
    second = sim.name("w")
    assert sim("clone", first, second, env=env).returncode == 0  # the 2nd machine: admitted
    assert sim("start", second, env=env).returncode == 0
    late = sim.name("w")
    assert sim("clone", first, late, env=env).returncode == 0  # a clone needs no address
    res = sim("start", late, env=env)
    assert (res.returncode, res.stderr) == (
        1,
        f"[-32098] start '{late}': setup: machine didn't start in 30s (missing IP address)\n",
    )
    assert sim.state(late) == "stopped"
    new = sim.name("w")
    res = sim("create", "debian", new, env=env)
    assert (res.returncode, res.stderr) == (
        1,
        f"[-32098] create '{new}': setup: machine didn't start in 30s (missing IP address)\n",
    )
    assert sim.state(new) is None  # the failed create leaves nothing
    sim.ok("delete", "-f", late, second)
    sim.ok("stop")  # all of "OrbStack"
    sim.ok("start")
    again = sim.name("w")
    res = sim("create", "debian", again, env=env)
    assert res.returncode == 1 and "missing IP address" in res.stderr, res
    assert sim("stop", first, env=env).returncode == 0
    assert sim("start", first, env=env).returncode == 0  # made before the wedge: still works
    wedged = [op for op in sim.ops() if op.get("fault") == "wedge:ip"]
    assert [(op["cmd"], op["machines"][:1], op["rc"]) for op in wedged] == [
        ("start", [late], 1),
        ("create", [new], 1),
        ("create", [again], 1),
    ]
    sim.ok("delete", "-f", first)
