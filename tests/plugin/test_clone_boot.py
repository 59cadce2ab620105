"""A clone boots like a fresh machine (issue #23): what generalization removed (machine-id, SSH
host keys, random seed) is made anew *before* the services that need it start, so the set of
failed units in a clone is the set its template had; readiness refuses a clone that booted
worse than its template; and tests that will not run make no machines.

Each deploy ends by writing the template's failed units to ``/var/tmp/template-failed``: the
file travels into every clone, where the tests compare it with the clone's own failed units.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.plugin.conftest import OrbEnv

#: Last operation of every template deploy here: the template's failed units, as it is cloned.
RECORD_FAILED = """
from pyinfra.operations import server
server.shell(
    name="Record the template's failed units",
    commands=["systemctl list-units --state=failed --plain --no-legend --no-pager --full"
              " | while read -r unit _; do echo $unit; done >/var/tmp/template-failed"],
    _sudo=True,
)
"""

SSH_DEPLOY = (
    """
from io import StringIO
from pyinfra.operations import apt, files, systemd
apt.packages(name="Install the SSH server", packages=["openssh-server"], update=True,
             cache_time=3600, no_recommends=True, _sudo=True)
config = files.put(name="No password logins", src=StringIO("PasswordAuthentication no\\n"),
                   dest="/etc/ssh/sshd_config.d/50-test.conf", mode="644", _sudo=True)
systemd.service(name="Restart sshd on a config change", service="ssh", running=True,
                restarted=config.did_change, _sudo=True)
"""
    + RECORD_FAILED
)

NGINX_DEPLOY = (
    """
from pyinfra.operations import apt, systemd
apt.packages(name="Install nginx", packages=["nginx"], update=True, cache_time=3600,
             no_recommends=True, _sudo=True)
systemd.service(name="Run nginx", service="nginx", running=True, enabled=True, _sudo=True)
"""
    + RECORD_FAILED
)


def oneshot_unit_deploy(unit: str, description: str, command: str) -> str:
    """A deploy that installs, enables and starts a oneshot unit running ``sh -c COMMAND``."""
    return f"""
from io import StringIO
from pyinfra.operations import files, systemd
UNIT = '''[Unit]
Description={description}
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c '{command}'
[Install]
WantedBy=multi-user.target
'''
files.put(name="The unit", src=StringIO(UNIT), dest="/etc/systemd/system/{unit}.service",
          _sudo=True)
systemd.service(name="Enable it", service="{unit}", running=True, enabled=True,
                daemon_reload=True, _sudo=True)
"""


#: A unit that needs the machine's own identity while it boots: it fails without a machine-id.
MACHINE_ID_DEPLOY = (
    oneshot_unit_deploy(
        "seen-id",
        "Reads the machine id at boot",
        "test -s /etc/machine-id && cat /etc/machine-id >/var/lib/seen-machine-id",
    )
    + RECORD_FAILED
)

#: Checks every clone passes, whatever its template installed.
COMMON = """
import json, os, socket
import pytest

def failed_units(vm):
    out = vm.run("systemctl list-units --state=failed,auto-restart --plain --no-legend "
                 "--no-pager --full | while read -r u _; do echo $u; done", user="root")
    return sorted(out.stdout.split())

def active(vm, unit):
    return vm.run(["systemctl", "is-active", unit]).stdout.strip() == "active"

def check_clean_boot(vm):
    template = vm.run(["cat", "/var/tmp/template-failed"], check=True).stdout.split()
    assert failed_units(vm) == sorted(template)
    assert vm.run(["systemctl", "is-system-running"]).stdout.strip() == "running"
    unit = "/etc/systemd/system/pytest-orbstack-firstboot.service"
    assert not vm.run(["test", "-e", unit]).ok            # the first-boot unit removed itself
    assert not vm.run(["test", "-e", "/var/lib/pytest-orbstack-origin-failed"]).ok
    machine_id = vm.run(["cat", "/etc/machine-id"], check=True).stdout.strip()
    assert len(machine_id) == 32
    return machine_id

def note(kind, vm, value):
    with open(os.environ["CLONE_NOTES"], "a") as fh:
        fh.write(json.dumps({"kind": kind, "machine": vm.name, "value": value}) + "\\n")
"""

SSH_CHECKS = """
def check_ssh(vm):
    machine_id = check_clean_boot(vm)
    assert active(vm, "ssh")
    assert "passwordauthentication no" in vm.run(["sshd", "-T"], user="root").stdout
    with socket.create_connection((vm.ip, 22), timeout=30) as conn:    # from the host
        assert conn.recv(64).startswith(b"SSH-2.0-OpenSSH")
    key = vm.run(["ssh-keygen", "-lf", "/etc/ssh/ssh_host_ed25519_key.pub"], check=True)
    note("ssh", vm, {"key": key.stdout.split()[1], "id": machine_id})
"""


def _project(pytester: pytest.Pytester, deploys: dict[str, str], tests: dict[str, str]) -> None:
    folder = pytester.path / "deploys"
    folder.mkdir(exist_ok=True)
    for name, text in deploys.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(text))
    (pytester.path / "clonecheck.py").write_text(COMMON + SSH_CHECKS)
    for name, text in tests.items():
        (pytester.path / f"{name}.py").write_text(textwrap.dedent(text))


def _notes(pytester: pytest.Pytester) -> list[dict[str, object]]:
    path = pytester.path / "notes.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ssh_role_runs_in_every_function_and_module_clone(
    pytester: pytest.Pytester, orb_env: OrbEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ten function-scoped clones (enough to catch a first-boot race) and a module-scoped one,
    # all of one template that installed openssh-server and changed its configuration.
    _project(
        pytester,
        {"ssh": SSH_DEPLOY},
        {
            "test_ssh_function": """
                import pytest
                from clonecheck import check_ssh
                pytestmark = pytest.mark.orbstack(isolation="function", deploy="deploys/ssh.py")

                @pytest.mark.parametrize("n", range(10))
                def test_sshd_runs(orb_vm, n):
                    check_ssh(orb_vm)
            """,
            "test_ssh_module": """
                import pytest
                from clonecheck import check_ssh
                pytestmark = pytest.mark.orbstack(isolation="module", deploy="deploys/ssh.py")

                @pytest.mark.parametrize("n", range(2))
                def test_sshd_runs(orb_vm, n):
                    check_ssh(orb_vm)
            """,
        },
    )
    monkeypatch.setenv("CLONE_NOTES", str(pytester.path / "notes.jsonl"))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:randomly", timeout=900
    )
    result.assert_outcomes(passed=12)
    notes = [n["value"] for n in _notes(pytester) if n["kind"] == "ssh"]
    machines = {n["machine"] for n in _notes(pytester)}
    assert len(machines) == 11  # ten function clones, one module clone
    # each machine has host keys and a machine-id of its own
    assert len({n["key"] for n in notes}) == len({n["id"] for n in notes}) == 11  # type: ignore[index]
    assert orb_env.made()["create"] == 1  # the template; every test machine is a clone
    assert orb_env.names() == []


def test_clones_fail_no_unit_their_template_did_not(
    pytester: pytest.Pytester, orb_env: OrbEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rule for three kinds of template: an nginx server and a unit that reads the machine-id
    # at boot (the SSH one is above); two clones each, under xdist.
    _project(
        pytester,
        {"nginx": NGINX_DEPLOY, "seen_id": MACHINE_ID_DEPLOY},
        {
            "test_nginx": """
                import pytest, urllib.request
                from clonecheck import active, check_clean_boot
                pytestmark = pytest.mark.orbstack(isolation="function", deploy="deploys/nginx.py")

                @pytest.mark.parametrize("n", range(2))
                def test_nginx(orb_vm, n):
                    check_clean_boot(orb_vm)
                    assert active(orb_vm, "nginx")
                    with urllib.request.urlopen(f"http://{orb_vm.ip}/", timeout=30) as page:
                        assert page.status == 200
            """,
            "test_seen_id": """
                import pytest
                from clonecheck import active, check_clean_boot, note
                pytestmark = pytest.mark.orbstack(isolation="function", deploy="deploys/seen_id.py")

                @pytest.mark.parametrize("n", range(2))
                def test_unit_saw_the_clones_own_id(orb_vm, n):
                    machine_id = check_clean_boot(orb_vm)
                    assert active(orb_vm, "seen-id")
                    seen = orb_vm.run(["cat", "/var/lib/seen-machine-id"]).stdout.strip()
                    assert seen == machine_id
                    note("id", orb_vm, machine_id)
            """,
        },
    )
    monkeypatch.setenv("CLONE_NOTES", str(pytester.path / "notes.jsonl"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", timeout=900)
    result.assert_outcomes(passed=4)
    ids = [n["value"] for n in _notes(pytester) if n["kind"] == "id"]
    assert len(set(ids)) == 2  # each clone's unit saw that clone's own id
    assert orb_env.wait_until_empty() == []


#: A unit that works on the template and fails in every clone (it checks the hostname).
BROKEN_DEPLOY = oneshot_unit_deploy(
    "tpl-only",
    "Works on the template only",
    "case $(hostname) in *-tpl-*) exit 0 ;; esac; echo broken-in-clone; exit 3",
)


def test_a_clone_with_a_unit_its_template_had_not_failed_is_not_ready(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    _project(
        pytester,
        {"broken": BROKEN_DEPLOY},
        {
            "test_broken": """
                import pytest
                pytestmark = pytest.mark.orbstack(isolation="function", deploy="deploys/broken.py")

                def test_never_gets_the_machine(orb_vm):
                    raise AssertionError("a clone with a failed unit was handed out")
            """
        },
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=600)
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert "a clone with a failed unit was handed out" not in text
    result.stdout.fnmatch_lines(
        ["*booted with failed units its origin did not have: tpl-only.service*"]
    )
    assert "broken-in-clone" in text  # the unit's journal tail is in the error
    assert orb_env.wait_until_empty() == []


def test_tests_that_will_not_run_make_no_machines(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    pytester.makepyfile(
        test_skipped="""
        import sys
        import pytest
        pytestmark = pytest.mark.orbstack(isolation="function")

        @pytest.mark.skip(reason="not today")
        def test_skip(orb_vm): ...

        @pytest.mark.skipif(True, reason="true condition")
        def test_skipif(orb_vm): ...

        @pytest.mark.skipif("sys.platform != 'no-such-platform'", reason="true string condition")
        def test_skipif_string(orb_vm): ...

        @pytest.mark.xfail(run=False, reason="not run")
        def test_xfail_not_run(orb_vm): ...

        @pytest.mark.skip(reason="factories too")
        def test_factory(orb_vm_factory): ...
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(skipped=4, xfailed=1)
    making = [op for op in orb_env.sim.ops() if op.get("cmd") in ("create", "clone", "start")]
    assert making == []

    # a false condition still gets its machine, and only the tests that run count as demand
    pytester.makepyfile(
        test_skipped="""
        import pytest
        pytestmark = pytest.mark.orbstack(isolation="function")

        @pytest.mark.skipif(False, reason="false condition")
        def test_runs(orb_vm):
            assert orb_vm.run(["true"]).ok

        @pytest.mark.parametrize("n", range(3))
        @pytest.mark.skip(reason="not today")
        def test_skip(orb_vm, n): ...
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300).assert_outcomes(
        passed=1, skipped=3
    )
    assert orb_env.made()["fresh"] == 1
