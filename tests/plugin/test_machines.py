"""Real pytest sessions of the plugin (pytester, in subprocesses) against the simulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.plugin.conftest import OrbEnv


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", *args, timeout=600)


def test_function_isolation_gives_each_test_a_fresh_machine(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    pytester.makepyfile(
        test_fn="""
        import pytest

        @pytest.mark.orbstack(isolation="function")
        @pytest.mark.parametrize("n", [1, 2])
        def test_fresh(orb_vm, n):
            # nothing from the other test is here
            assert not orb_vm.run(["test", "-e", "/tmp/marker"]).ok
            orb_vm.run(["touch", "/tmp/marker"], check=True)
            assert orb_vm.run("hostname").stdout.strip() == orb_vm.name
            assert orb_vm.hostname == orb_vm.name + ".orb.local"
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=2)
    made = orb_env.made()
    assert (made["create"], made["fresh"]) == (1, 2)  # one base, a clone of it per test
    assert orb_env.count("delete") >= 1
    assert orb_env.names() == []


def test_machine_api_run_push_pull(pytester: pytest.Pytester, orb_env: OrbEnv) -> None:
    pytester.makepyfile(
        test_api=r"""
        import pytest
        from pytest_orbstack import CommandError

        def test_api(orb_vm, tmp_path):
            r = orb_vm.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
            assert (r.returncode, r.stdout, r.stderr, r.ok) == (3, "out\n", "err\n", False)
            with pytest.raises(CommandError):
                r.check_returncode()
            # metacharacters reach the machine as single arguments
            weird = "a b; $(id) `x` 'q' \"d\" *"
            assert orb_vm.run(["printf", "%s", weird]).stdout == weird
            assert orb_vm.run("echo $((1+2))").stdout == "3\n"
            assert orb_vm.run(["cat"], input="data in").stdout == "data in"
            assert orb_vm.run(["pwd"], cwd="/tmp").stdout == "/tmp\n"
            assert orb_vm.run(["pwd"], cwd="/no/such/dir").stdout == "/\n"
            assert orb_vm.run(["id", "-u"], user="root").stdout == "0\n"
            greet = orb_vm.run(["sh", "-c", "echo $GREETING"], env={"GREETING": "hi"})
            assert greet.stdout == "hi\n"
            src = tmp_path / "f.txt"
            src.write_text("pushed")
            src.chmod(0o644)
            orb_vm.push(src, "f.txt")
            assert orb_vm.run(["cat", "f.txt"]).stdout == "pushed"
            orb_vm.run("echo pulled > g.txt", check=True)
            orb_vm.pull("g.txt", tmp_path / "g.txt")
            assert (tmp_path / "g.txt").read_text() == "pulled\n"
            assert orb_vm.ip
            assert orb_vm.info().state == "running"
        """
    )
    run(pytester).assert_outcomes(passed=1)
    assert orb_env.names() == []


@pytest.mark.parametrize("workers", ["2", "4"])
def test_session_machine_shared_by_all_xdist_workers(
    pytester: pytest.Pytester, orb_env: OrbEnv, workers: str, tmp_path: Path
) -> None:
    out = tmp_path / "names"
    out.mkdir()
    pytester.makepyfile(
        test_shared=f"""
        import os, pytest
        @pytest.mark.parametrize("n", range(8))
        def test_shared(orb_vm, n):
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            with open(os.path.join({str(out)!r}, f"{{worker}}-{{n}}"), "w") as fh:
                fh.write(orb_vm.name)
            assert orb_vm.run(["true"]).ok
        """
    )
    result = run(pytester, "-n", workers)
    result.assert_outcomes(passed=8)
    names = {p.read_text() for p in out.iterdir()}
    workers_seen = {p.name.split("-")[0] for p in out.iterdir()}
    assert len(names) == 1, names
    assert len(workers_seen) >= 2  # really shared across processes
    made = orb_env.made()
    # the session machine is its base's only user: created directly (no base to clone)
    assert (made["create"], made["session"]) == (1, 0)
    [create] = [op for op in orb_env.sim.ops() if op.get("cmd") == "create"]
    assert create["args"][-1] in names
    deletes = [op for op in orb_env.sim.ops() if op.get("cmd") == "delete" and op.get("rc") == 0]
    assert len(deletes) == 1
    assert orb_env.names() == []


def test_module_isolation_one_machine_per_module(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    body = """
        import pytest
        pytestmark = pytest.mark.orbstack(isolation="module")
        NAMES = []
        def test_a(orb_vm):
            NAMES.append(orb_vm.name)
        def test_b(orb_vm):
            NAMES.append(orb_vm.name)
            assert NAMES[0] == NAMES[1]
        """
    pytester.makepyfile(test_m1=body, test_m2=body)
    run(pytester).assert_outcomes(passed=4)
    made = orb_env.made()
    assert (made["create"], made["fresh"]) == (1, 2)
    assert orb_env.names() == []


def test_factory_machines_are_cleaned_up(pytester: pytest.Pytester, orb_env: OrbEnv) -> None:
    pytester.makepyfile(
        test_factory="""
        import pytest
        from pytest_orbstack import ConfigError

        def test_two(orb_vm_factory):
            a = orb_vm_factory(image="debian:12")
            b = orb_vm_factory(image="ubuntu:noble", user="builder")
            assert a.name != b.name
            assert b.run(["whoami"]).stdout.strip() == "builder"
            with pytest.raises(ConfigError, match="isolation must be one of"):
                orb_vm_factory(isolation="bogus")
        """
    )
    run(pytester).assert_outcomes(passed=1)
    made = orb_env.made()
    assert (made["create"], made["fresh"]) == (2, 2)  # one base per image and user
    assert orb_env.names() == []


def test_keep_on_failure_keeps_failing_tests_machines(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    pytester.makepyfile(
        test_keep="""
        import pytest
        pytestmark = pytest.mark.orbstack(isolation="function")
        def test_ok(orb_vm):
            pass
        def test_bad(orb_vm):
            orb_vm.run(["echo", "last-command-marker"])
            assert False, "boom"
        """
    )
    result = run(pytester, "--orbstack-keep=on-failure")
    result.assert_outcomes(passed=1, failed=1)
    [kept] = orb_env.names()
    stdout = result.stdout.str()
    assert f"orb -m {kept}" in stdout
    assert f"ssh {kept}@orb" in stdout
    assert "last-command-marker" in stdout  # the failure section lists the last commands
    # a later run neither reaps nor touches the kept machine
    pytester.makepyfile(test_keep="def test_nothing():\n    pass\n")
    run(pytester).assert_outcomes(passed=1)
    assert orb_env.names() == [kept]


def test_summary_and_json_report(pytester: pytest.Pytester, orb_env: OrbEnv) -> None:
    report = pytester.path / "orb-report.json"
    pytester.makepyfile(
        test_rep="""
        import pytest
        @pytest.mark.orbstack(isolation="function")
        def test_a(orb_vm):
            pass
        def test_b(orb_vm):
            pass
        """
    )
    result = run(pytester, f"--orbstack-report={report}")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*orbstack machines*",
            "machine*image*isolation*deploy*tests*create*delete*outcome*",
            "*-base-*debian *base*0*deleted*",
            "*debian *function*1*deleted*",
            "*debian *session*1*deleted*",
            "3 machine(s): 3 created, 0 reused, 3 deleted*",
            "time to first test: *s",
        ]
    )
    data = json.loads(report.read_text())
    by_kind = {m["kind"]: m for m in data["machines"]}
    assert set(by_kind) == {"base", "function", "session"}
    assert all(m["outcome"] == "deleted" for m in data["machines"])
    assert by_kind["base"]["phases"]["create"] > 0  # the one create; the others are clones
    assert by_kind["function"]["phases"]["clone"] > 0
    assert by_kind["session"]["phases"]["clone"] > 0
    assert {t["nodeid"].split("::")[-1] for t in data["tests"]} == {"test_a", "test_b"}
    assert data["orbctl_calls"]["create"] == 1
    assert 0 < data["time_to_first_test"] < 300


def test_reuse_adopts_matching_and_replaces_stale(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    cloud = pytester.path / "user-data.yaml"
    cloud.write_text("#cloud-config\n")
    pytester.makepyfile(
        test_reuse="""
        import pytest
        @pytest.mark.orbstack(user_data="user-data.yaml")
        def test_a(orb_vm):
            orb_vm.run(["true"], check=True)
        """
    )
    run(pytester, "--orbstack-reuse").assert_outcomes(passed=1)
    first = orb_env.names()
    assert len(first) == 2  # the session machine and its base, both kept for the next run
    assert orb_env.count("create") == 1
    run(pytester, "--orbstack-reuse").assert_outcomes(passed=1)
    assert orb_env.names() == first
    assert orb_env.count("create") == 1  # adopted, not created again
    assert orb_env.made()["reuse"] == 1
    cloud.write_text("#cloud-config\n# changed\n")
    result = run(pytester, "--orbstack-reuse")
    result.assert_outcomes(passed=1)
    assert orb_env.count("create") == 2  # a new base for the new user-data
    names = orb_env.names()
    assert len(names) == 2
    [old_base] = [n for n in first if "-base-" in n]
    assert old_base not in names  # the stale base was pruned
    assert orb_env.made()["reuse"] == 2  # the stale session machine was made again


def _spawn_pytest(pytester: pytest.Pytester, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=pytester.path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for(predicate, timeout: float = 120) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


SLOW_TEST = """
import pytest, time
@pytest.mark.orbstack(isolation="function")
def test_slow(orb_vm):
    open("started", "w").close()
    time.sleep(120)
"""


def test_sigkill_of_pytest_is_cleaned_by_the_watchdog(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    pytester.makepyfile(test_slow=SLOW_TEST)
    foreign = orb_env.sim.unique_name("orbpt-look-alike")
    orb_env.client().create("debian", foreign)
    proc = _spawn_pytest(pytester)
    assert _wait_for(lambda: (pytester.path / "started").exists())
    assert len(orb_env.names()) == 3  # the foreign machine, the base, the test's clone
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    left = _wait_for(lambda: orb_env.names() == [foreign], timeout=60)
    assert left, f"machines left after SIGKILL: {orb_env.names()}"


def test_reaper_of_next_run_deletes_dead_runs_machines_only(
    pytester: pytest.Pytester, orb_env: OrbEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORBSTACK_WATCHDOG", "0")  # prove the start-up reaper on its own
    pytester.makepyfile(test_slow=SLOW_TEST, test_other="def test_nothing():\n    pass\n")
    foreign = orb_env.sim.unique_name("orbpt-foreign")
    orb_env.client().create("debian", foreign)
    dead = _spawn_pytest(pytester, "test_slow.py")
    assert _wait_for(lambda: (pytester.path / "started").exists())
    os.killpg(dead.pid, signal.SIGKILL)
    dead.wait()
    victims = sorted(n for n in orb_env.names() if n != foreign)  # the base and its clone
    assert len(victims) == 2
    result = run(pytester, "test_other.py")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*deleted 2 machine(s) left by dead runs: *"])
    assert all(v in result.stdout.str() for v in victims)
    assert orb_env.names() == [foreign]
    # a concurrent, live run's machine survives another run's reaper
    (pytester.path / "started").unlink()
    live = _spawn_pytest(pytester, "test_slow.py")
    try:
        assert _wait_for(lambda: (pytester.path / "started").exists())
        live_machines = [n for n in orb_env.names() if n != foreign]
        result = run(pytester, "test_other.py")
        result.assert_outcomes(passed=1)
        assert "left by dead runs" not in result.stdout.str()
        assert sorted(orb_env.names()) == sorted([foreign, *live_machines])
    finally:
        os.killpg(live.pid, signal.SIGINT)
        live.wait(timeout=120)
    assert orb_env.names() == [foreign]  # Ctrl-C of the live run cleaned its own machine


def test_ctrl_c_during_create_leaves_nothing(
    pytester: pytest.Pytester, orb_env: OrbEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORBSIM_LATENCY", "create=4")
    pytester.makepyfile(
        test_int="""
        import pytest
        @pytest.mark.orbstack(isolation="function")
        def test_x(orb_vm):
            pass
        """
    )
    proc = _spawn_pytest(pytester)
    assert _wait_for(
        lambda: any(op.get("cmd") == "create" for op in orb_env.sim.ops()) or bool(orb_env.names()),
        timeout=60,
    )
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert _wait_for(lambda: orb_env.names() == [], timeout=60), (orb_env.names(), out[-3000:])


def test_verbose_mode_shows_slow_steps(pytester: pytest.Pytester, orb_env: OrbEnv) -> None:
    pytester.makepyfile(
        test_v="""
        import pytest
        @pytest.mark.orbstack(isolation="function")
        def test_a(orb_vm):
            pass
        """
    )
    result = run(pytester, "-v", "--orbstack-pool-size=0")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "orbstack: making function machine orbpt-*(debian)",
            "orbstack: orbpt-* ready in *s",
        ]
    )
    quiet = run(pytester, "--orbstack-pool-size=0")
    assert "orbstack: making" not in quiet.stdout.str()


def test_a_machine_that_is_not_the_image_asked_for_is_marked(
    pytester: pytest.Pytester, orb_env: OrbEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No image server reachable: the simulator stands Debian in for Ubuntu (and says so in its
    # own logs); the plugin sees it from inside the machine and says so in the summary.
    monkeypatch.setenv("ORBSIM_IMAGE_SERVER", "http://127.0.0.1:9")
    monkeypatch.setenv("ORBSIM_IMAGE_TIMEOUT", "2")
    pytester.makepyfile(
        test_img="""
        import pytest

        @pytest.mark.orbstack(image="ubuntu:noble")
        def test_ubuntu(orb_vm):
            pass

        @pytest.mark.orbstack(image="debian:12", isolation="function")
        def test_debian(orb_vm):
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        ["*ubuntu:noble (is debian bookworm)*", "*not the image asked for*"]
    )
    assert "debian:12 (is" not in out  # debian:12 is bookworm: not marked
