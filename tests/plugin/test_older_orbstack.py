"""The fixtures against an orbctl that answers like an older OrbStack (not only the parsers).

``old_orbctl.py`` wraps the simulator and reshapes its JSON as OrbStack printed it before 2025:
the bare record for ``info`` (no address fields at all), ``{record, disk_size}`` without
``ip4``, and ``null`` for an empty list.  Readiness must not wait for an address such an
OrbStack never reports (it used to wait out the whole deadline and fail every machine).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.plugin.conftest import OrbEnv

SHIM = Path(__file__).with_name("old_orbctl.py")

TESTS = """
import pytest

def test_session_machine(orb_vm):
    assert orb_vm.run(["true"]).ok
    assert orb_vm.info().state == "running"

@pytest.mark.orbstack(isolation="function")
@pytest.mark.parametrize("n", [1, 2])
def test_fresh_machine(orb_vm, n):
    assert orb_vm.run(["hostname"]).stdout.strip() == orb_vm.name
    # an OrbStack that reports no address gives none: the plugin never invents one
    if {no_ip}:
        assert orb_vm.ip is None
    else:
        assert orb_vm.ip
"""


@pytest.mark.parametrize(
    "shape", ["flat", "no-ip", "null-lists", "flat,null-lists"], ids=lambda s: s.replace(",", "+")
)
def test_fixtures_work_with_older_orbstack_json(
    pytester: pytest.Pytester, orb_env: OrbEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    shape: str,
) -> None:  # fmt: skip
    shim = tmp_path / "orbctl"
    shim.write_text(f"#!{sys.executable}\n" + SHIM.read_text())
    shim.chmod(0o755)
    monkeypatch.setenv("OLD_ORBCTL_REAL", orb_env.sim.executable)
    monkeypatch.setenv("OLD_ORBCTL_SHAPE", shape)
    no_ip = "flat" in shape or "no-ip" in shape
    pytester.makepyfile(test_old=TESTS.format(no_ip=no_ip))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--orbstack-orbctl={shim}", "--orbstack-required", timeout=300
    )
    result.assert_outcomes(passed=3)
    # Readiness asked `info` a few times per machine, not until a deadline.
    machines = orb_env.count("create") + orb_env.count("clone")
    assert machines >= 3
    assert orb_env.count("info") <= 6 * machines, orb_env.count("info")
    assert orb_env.names() == []  # cleanup read the (possibly null) list correctly
