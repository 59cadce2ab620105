"""A failing test's report says what an infrastructure engineer looks at first: the console log
(single-spaced), ``systemctl --failed``, and the journal of the units the deploys touched, each
bounded; also when the failure is a provisioning deploy during set-up (the machine is gone
afterwards, so what it looked like is in the error)."""

from __future__ import annotations

import re

import pytest

from pytest_orbstack import diagnostics
from tests.plugin.conftest import OrbEnv

#: A unit that fails when started (a oneshot whose command exits 1), written and started by
#: the deploy: the journal then has the failure, and ``systemctl --failed`` lists it.
BROKEN = """
from pyinfra.operations import server
server.shell(
    name="broken unit",
    commands=[
        "printf '[Unit]\\\\nDescription=made to fail\\\\n[Service]\\\\nType=oneshot\\\\n"
        "ExecStart=/bin/echo broken-unit-says-hello\\\\nExecStartPost=/bin/false\\\\n' "
        "> /etc/systemd/system/broken.service",
        "systemctl daemon-reload",
        "systemctl start broken.service{tail}",
    ],
    _sudo=True,
)
"""


def test_failing_test_shows_failed_units_and_the_journal_of_what_its_deploy_touched(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    (pytester.path / "deploys").mkdir()
    (pytester.path / "deploys" / "broken.py").write_text(BROKEN.replace("{tail}", " || true"))
    pytester.makepyfile(
        test_fail="""
        import pytest

        @pytest.mark.orbstack(isolation="function")
        def test_service(orb_vm):
            assert orb_vm.deploy("deploys/broken.py").ok
            assert orb_vm.run(["systemctl", "is-active", "broken.service"]).ok, "not running"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=600)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    section = out[out.index(" orbstack machine orbpt-") :]
    assert re.search(r"image: debian:\S+ \((amd64|arm64)\)", section), section
    assert "systemctl --failed:" in section
    assert re.search(r"^\s+broken\.service\s+loaded\s+failed\s+failed", section, re.M), section
    assert "journal of broken.service:" in section
    assert "broken-unit-says-hello" in section  # the unit's own output, from the journal
    console = section[section.index("console log (tail):") : section.index("systemctl --failed:")]
    rows = console.splitlines()[1:]
    assert rows, section
    assert all(row.strip() for row in rows), "blank lines in the console log:\n" + console
    assert len(rows) <= diagnostics.CONSOLE_LINES
    assert orb_env.names() == []


def test_provisioning_deploy_failing_in_setup_reports_the_machine_it_ran_on(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    (pytester.path / "deploys").mkdir()
    (pytester.path / "deploys" / "broken.py").write_text(BROKEN.replace("{tail}", ""))
    pytester.makepyfile(
        test_setup="""
        import pytest

        @pytest.mark.orbstack(isolation="function", deploy="deploys/broken.py")
        def test_never_runs(orb_vm):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=600)
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "no machine for" in out
    assert "broken unit" in out  # the failed operation
    assert "systemctl --failed:" in out
    assert "journal of broken.service:" in out
    assert "broken-unit-says-hello" in out
    assert orb_env.names() == []  # the half-made template is gone all the same
