"""The suite can fail: run against a deliberately wrong orbctl (``wrong_orbctl.py``), it fails
exactly the behaviours that are wrong, each with its expected and got.

Not a conformance test itself (no ``reference`` marker: it is not counted), and only run when
the suite checks its default orbctl (orbsim): against OrbStack it would prove nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conformance.plugin import orbctl_choice

HERE = Path(__file__).parent
SELECTED = [
    "test_machines.py::test_info_json_running",
    "test_clone.py::test_clone_is_stopped_and_inherits",
    "test_errors.py::test_not_found",
    "test_surface.py::test_client_and_server_error_format",
    "test_run_copy.py::test_run_exit_status_and_streams",
]


@pytest.fixture
def wrong_orbctl(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    exe, default = orbctl_choice(request.config)
    if not default or exe is None:
        pytest.skip("checks the suite itself: only with the default orbctl (orbsim)")
    status = subprocess.run(
        [exe, "status"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    if status.stdout.strip() != "Running":
        pytest.skip("orbsim cannot run machines here")
    launcher = tmp_path / "bin" / "orbctl"
    launcher.parent.mkdir()
    launcher.write_text(
        f"#!{sys.executable}\nimport runpy, sys\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        f"runpy.run_path({str(HERE / 'wrong_orbctl.py')!r}, run_name='__main__')\n"
    )
    launcher.chmod(0o755)
    return str(launcher)


def test_wrong_orbctl_fails_with_readable_differences(
    pytester: pytest.Pytester, wrong_orbctl: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORBSIM_HOME", str(tmp_path / "home"))
    report = tmp_path / "report.json"
    result = pytester.runpytest_subprocess(
        *[str(HERE / s) for s in SELECTED],
        f"--orbctl={wrong_orbctl}",
        f"--conformance-report={report}",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        timeout=600,
    )
    out = result.stdout.str()
    result.assert_outcomes(failed=7, passed=1)  # test_not_found has 4 cases
    # the flat info shape
    assert "§3 info: info -f json is {record, disk_size, ip4, ip6} while running" in out
    assert "expected: ['record', 'disk_size', 'ip4', 'ip6']" in out
    assert "got:      ['id', 'name', 'image', 'config', 'builtin', 'state']" in out
    # the clone that starts the new machine
    assert "§2 clone: the new machine is 'stopped'" in out
    assert "expected: 'stopped'\n      got:      'running'" in out
    # the changed error text, and what it does to the plugin's classification
    assert "expected: exit 1, stderr \"[-32098] machine not found: 'orbconf-" in out
    assert "got:      exit 1, stderr \"[-32602] no machine found: 'orbconf-" in out
    assert "§9: the plugin classifies it as MachineNotFoundError" in out
    assert "expected: MachineNotFoundError\n      got:      OrbctlError" in out
    # the summary counts the differences, and the report holds them
    assert "orbctl conformance" in out and "report: " in out
    data = json.loads(report.read_text())
    differs = [b for b in data["behaviours"] if b["outcome"] == "differs"]
    assert {b["section"] for b in differs} >= {"§3 info", "§2 clone", "§9", "§9 not found"}
    assert data["totals"]["differs"] == len(differs) > 0
    assert data["tests"][next(k for k in data["tests"] if "test_run_exit" in k)] == "passed"
