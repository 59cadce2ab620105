"""OrbStack 2.2 parity (issue #20, docs/orbctl-contract.md §16) through pytester sessions on the
simulator: a stopped OrbStack is started, machine settings reach the machine, version-number
images, a wedged OrbStack ends the run fast, machines are deleted by name only."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.plugin.conftest import OrbEnv

pytestmark = pytest.mark.usefixtures("sim_home")


# -- a stopped OrbStack is started (issue #20 item 7) ----------------------------------------


def test_a_stopped_orbstack_is_started_by_the_plugin(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    client = orb_env.client()
    stop = client.invoke(["stop"])  # without names: stops "OrbStack" itself
    assert stop.returncode == 0
    assert client.status() == "Stopped"
    pytester.makepyfile("def test_x(orb_vm):\n    assert orb_vm.run(['true']).ok\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*OrbStack was stopped: started it (orbctl start) in *s*"])
    assert client.status() == "Running"
    assert orb_env.sim.count("start") >= 1


def test_no_start_skips_a_stopped_orbstack_with_the_reason(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    client = orb_env.client()
    assert client.invoke(["stop"]).returncode == 0
    pytester.makepyfile("def test_x(orb_vm):\n    pass\n")
    result = pytester.runpytest("-rs", "--orbstack-no-start")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*OrbStack is not running (Stopped) and --orbstack-no-start*"])
    assert client.status() == "Stopped"  # left alone


STUCK_ORBCTL = """\
import sys
args = sys.argv[1:]
if args == ["status"]:
    print("Stopped")
    sys.exit(1)
if args == ["start"]:
    sys.stderr.write("start VM: timed out waiting for VM to start\\n")
    sys.exit(1)
sys.stderr.write(f"unexpected {args}\\n")
sys.exit(3)
"""


@pytest.mark.parametrize("required", [False, True])
def test_an_orbstack_that_cannot_start_skips_or_errors_with_the_reason(
    pytester: pytest.Pytester, tmp_path: Path, required: bool
) -> None:
    orbctl = tmp_path / "orbctl"
    orbctl.write_text(f"#!{sys.executable}\n{STUCK_ORBCTL}")
    orbctl.chmod(0o755)
    pytester.makepyfile("def test_x(orb_vm):\n    pass\n")
    args = ["-rs", "--orbstack-backend=orbctl", f"--orbstack-orbctl={orbctl}"]
    result = pytester.runpytest(*args, *(["--orbstack-required"] if required else []))
    result.assert_outcomes(**({"errors": 1} if required else {"skipped": 1}))
    result.stdout.fnmatch_lines(
        ["*OrbStack is stopped and `orbctl start` failed*timed out waiting for VM to start*"]
    )
