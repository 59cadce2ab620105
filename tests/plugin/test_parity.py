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


# -- machine settings (issue #20 item 3) ------------------------------------------------------

LIMITS = """
def limits(machine):
    \"\"\"(CPUs, memory limit in MiB) as the machine sees them: nproc (its cpuset) and its memory
    cgroup's limit (v2 or v1 file); -1 for no memory limit.\"\"\"
    out = machine.run(["sh", "-c", "nproc; cat /sys/fs/cgroup/memory.max 2>/dev/null || "
                       "cat /sys/fs/cgroup/memory/memory.limit_in_bytes"], check=True).stdout
    cpus, memory = out.split()
    mib = int(memory) // 2**20 if memory.isdigit() and int(memory) < 2**50 else -1
    return int(cpus), mib
"""


def test_settings_are_observed_inside_the_machine_and_its_clones(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    pytester.makepyfile(
        test_limits=LIMITS
        + """
import pytest

@pytest.mark.orbstack(isolation="function", cpus=1, memory="512M", disk="8G")
@pytest.mark.parametrize("n", range(2))
def test_clone(orb_vm, n):
    assert limits(orb_vm) == (1, 512)

def test_factory(orb_vm_factory):
    vm = orb_vm_factory(cpus=2, memory=768, isolated_from_mac=True)
    assert limits(vm) == (2, 768)
    assert limits(orb_vm_factory()) == (2, -1)  # no settings: no limits (this host has 2 CPUs)
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    ops = [op for op in orb_env.sim.ops() if op.get("rc") == 0]
    creates = [list(op["args"]) for op in ops if op.get("cmd") == "create"]
    assert ["--cpus", "1", "--memory", "512M", "--disk", "8G"] in [a[:6] for a in creates], creates
    assert any(a[:5] == ["--cpus", "2", "--memory", "768M", "--isolated"] for a in creates), creates
    clones = [str(op["args"][-1]) for op in ops if op.get("cmd") == "clone"]
    sets = [list(op["args"]) for op in ops if op.get("cmd") == "config"]  # [set, KEY, VALUE]
    for clone in clones:  # every clone gets its limits explicitly before its first start
        keys = {a[1].rsplit(".", 1)[1]: a[2] for a in sets if a[1].startswith(f"machine.{clone}.")}
        assert keys in (
            {"cpu": "1", "memory_mib": "512", "disk_bytes": str(8 * 1024**3)},
            {"cpu": "2", "memory_mib": "768"},
            {},  # the factory's plain machine
        ), (clone, keys)
    assert sum(1 for a in sets if a[1].endswith(".cpu")) >= 3, sets  # 2 clones + the factory's
    deletes = [a for op in orb_env.sim.ops() if op.get("cmd") == "delete" for a in op["args"]]
    assert deletes and not [a for a in deletes if a != "-f" and not str(a).startswith("orbpt-")]
    assert orb_env.names() == []


def test_bad_settings_are_usage_errors_naming_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
import pytest

@pytest.mark.orbstack(cpus=0)
def test_no_cpus(orb_vm):
    pass

@pytest.mark.orbstack(memory="lots")
def test_bad_memory(orb_vm):
    pass

@pytest.mark.orbstack(isolated_from_mac="yes")
def test_isolated(orb_vm):
    pass
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR or result.ret == pytest.ExitCode.INTERRUPTED
    text = result.stdout.str() + result.stderr.str()
    assert "test_no_cpus" in text and "cpus=0: a whole number of CPUs, at least 1" in text, text
    assert "test_bad_memory" in text and "memory='lots': a size in whole mebibytes" in text
    assert "test_isolated" in text and "not the same as isolation=" in text


def test_an_orbstack_older_than_2_2_fails_the_first_machine_clearly(
    pytester: pytest.Pytester, orb_env: OrbEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    shim = Path(__file__).with_name("old_orbctl.py")
    monkeypatch.setenv("OLD_ORBCTL_REAL", orb_env.sim.executable)
    monkeypatch.setenv("OLD_ORBCTL_SHAPE", "no-settings")  # says 2.1.2, rejects the flags
    pytester.makepyfile(
        """
import pytest

@pytest.mark.orbstack(cpus=2)
def test_x(orb_vm):
    pass

def test_plain(orb_vm):
    pass
"""
    )
    result = pytester.runpytest(
        "--orbstack-backend=orbctl", f"--orbstack-orbctl={shim}", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(errors=1, passed=1)
    text = result.stdout.str()
    assert "UnsupportedSettingError" in text, text
    assert "this OrbStack (2.1.2) does not support per-machine settings" in text
    assert "OrbStack 2.2 or later" in text and "Usage:" not in text
    assert not [op for op in orb_env.sim.ops() if "--cpus" in op.get("args", ())]
    assert orb_env.names() == []


def test_a_create_that_rejects_the_flags_fails_clearly(
    pytester: pytest.Pytester, orb_env: OrbEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version that says nothing useful (a dev build), and a create that rejects --cpus with
    cobra's unknown flag and usage dump: one clear error, not the dump."""
    shim = Path(__file__).with_name("old_orbctl.py")
    monkeypatch.setenv("OLD_ORBCTL_REAL", orb_env.sim.executable)
    monkeypatch.setenv("OLD_ORBCTL_SHAPE", "rejects-settings")
    pytester.makepyfile("import pytest\n\n@pytest.mark.orbstack(memory='1G')\n"
                        "def test_x(orb_vm):\n    pass\n")  # fmt: skip
    result = pytester.runpytest(
        "--orbstack-backend=orbctl", f"--orbstack-orbctl={shim}", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert "does not support per-machine settings (unknown flag: --memory)" in text, text
    assert "OrbStack 2.2 or later" in text and "Usage:" not in text
    assert orb_env.names() == []
