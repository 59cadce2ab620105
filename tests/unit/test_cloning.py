"""The readiness report's verdict on failed units (pure; the scripts run in tests/plugin)."""

from __future__ import annotations

from pytest_orbstack.cloning import GENERALIZE_SCRIPT, ORIGIN_FAILED
from pytest_orbstack.readiness import FAILED_REPORT, new_failures, ready_script, report_value


def test_new_failures_are_those_the_origin_did_not_have() -> None:
    out = "failed=ssh.service foo.service \norigin-failed=foo.service \nos=debian bookworm 12\n"
    assert new_failures(out) == ["ssh.service"]
    assert new_failures("failed=a.service \norigin-failed=a.service \n") == []
    assert new_failures("failed=\norigin-failed=\n") == []


def test_a_machine_that_is_no_clone_of_a_generalized_origin_is_not_judged() -> None:
    assert new_failures("failed=ssh.service \nos=debian bookworm 12\n") == []


def test_an_ssh_server_the_repair_could_not_restart_counts() -> None:
    out = "repair-failed=ssh.service\nfailed=\norigin-failed=\n"
    assert new_failures(out) == ["ssh.service"]


def test_report_value_takes_the_last_line() -> None:
    assert report_value("os=a\nos=debian bookworm 12\n", "os") == "debian bookworm 12"
    assert report_value("failed=x\n", "origin-failed") is None


def test_scripts_agree_on_the_origin_file() -> None:
    assert ORIGIN_FAILED in GENERALIZE_SCRIPT and ORIGIN_FAILED in FAILED_REPORT
    script = ready_script(cloud_init=True)
    # failures are read after cloud-init is done, the OS last
    assert script.index("cloud-init") < script.index("printf 'failed='") < script.index("os=")
    assert "cloud-init" not in ready_script(cloud_init=False)
