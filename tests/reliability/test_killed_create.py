"""The plugin against orbsim's *default* behaviour, which is OrbStack's: a create whose client
is killed (our per-call timeout) goes on in the server.  Retrying ``create`` would meet
``machine already exists``; the plugin must inspect the machine with ``info`` and adopt it once
it is running (retry.py), making exactly one ``create`` call (docs/orbctl-contract.md §2 create).
"""

from __future__ import annotations

import pytest

from orbsim.oplog import read_ops
from pytest_orbstack.orbctl import Orbctl
from pytest_orbstack.retry import RetryPolicy, create_machine
from tests.plugin.conftest import OrbEnv
from tests.reliability.conftest import leaks, run_pytester


def _creates(env: OrbEnv) -> list[dict[str, object]]:
    return [op for op in read_ops(env.sim.home) if op["cmd"] == "create"]


def test_retry_adopts_a_create_that_goes_on_after_its_timeout(orb_env: OrbEnv) -> None:
    client = Orbctl(
        orb_env.sim.executable,
        env={**orb_env.env, "ORBSIM_LATENCY": "create=4"},
        timeouts={"create": 1.0},
    )
    policy = RetryPolicy(attempts=3, initial=0.1, maximum=0.5, jitter=0.0, deadline=120)
    info = create_machine(client, policy, "debian:bookworm", "goes-on")
    assert (info.state, bool(info.ip4)) == ("running", True)
    creates = _creates(orb_env)
    # one client, killed (no line of its own), and the server's line once it finished
    assert [(op.get("server"), op.get("completed")) for op in creates] == [(True, True)]
    assert [r.name for r in client.list()] == ["goes-on"]
    client.delete("goes-on")


KILLED_SUITE = """
import pytest

@pytest.mark.orbstack(isolation="function")
def test_needs_machine(orb_vm):
    assert orb_vm.run(["true"]).ok
"""


def test_fixture_survives_a_timed_out_create(
    pytester: pytest.Pytester, orb_env: OrbEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole session whose every create outlives ``--orbstack-timeout``: the test passes,
    with one create call for its machine, and nothing is left behind."""
    pytester.makepyfile(test_killed=KILLED_SUITE)
    monkeypatch.setenv("ORBSIM_LATENCY", "create=4")
    result = run_pytester(pytester, "--orbstack-timeout=2", "--orbstack-pool-size=0")
    out = result.stdout.str()
    result.assert_outcomes(passed=1)
    assert "already exists" not in out, out[-4000:]
    assert len(_creates(orb_env)) == 1, _creates(orb_env)
    report = leaks(orb_env)
    assert report.clean, report
