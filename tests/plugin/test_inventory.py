"""Topologies (``inventory=`` in the marker, ``orb_inventory``), ``orb_deploy(inventory=...)``
and inventory files for the ``pyinfra`` CLI, in pytest sessions against the simulator.

One deploy (``site.py``) writes what it saw on each host to ``/tmp/facts``: the host's groups,
its group data (from the marker and from ``group_data/*.py`` next to the deploy), its own host
data and the ``web`` group's names and addresses read through ``inventory.get_group``; the inner
tests compare that with the machines they were given.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.plugin.conftest import OrbEnv

SITE = """
from io import StringIO
from pyinfra import host, inventory
from pyinfra.operations import files, server

# host.groups also has "@orb" (the connector's group), the inventory file's name, and may
# repeat a group (pyinfra's CLI inventory does the same with @connector/NAME hosts)
own = sorted({g for g in host.groups if g not in ("all", "inventory") and g[0] != "@"})
lines = [
    "groups=" + ",".join(own),
    "role=" + str(host.data.get("role")),
    "color=" + str(host.data.get("color")),
    "everyone=" + str(host.data.get("everyone")),
    "extra=" + str(host.data.get("extra")),
    "name=" + host.data.orb_name,
    "fqdn=" + host.data.orb_fqdn,
    "ip=" + str(host.data.orb_ip),
    "web=" + " ".join(
        f"{h.data.orb_fqdn}/{h.data.orb_ip}" for h in inventory.get_group("web", [])
    ),
]
files.put(name="facts", src=StringIO("\\n".join(lines) + "\\n"), dest="/tmp/facts")
if host.data.get("count_runs"):
    server.shell(name="count", commands=["echo run >> /tmp/deploy-runs"])
"""

HELPERS = """
import os, subprocess, sys
from pathlib import Path

def facts(machine):
    out = machine.run(["cat", "/tmp/facts"], check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())

def runs(machine):
    return machine.run(["cat", "/tmp/deploy-runs"]).stdout.count("run")

def web_line(machines):
    return " ".join(f"{m.hostname}/{m.ip}" for m in machines)
"""

TEST_MODULE = """
import subprocess, sys
from pathlib import Path

import pytest
from helpers import facts, runs, web_line

pytestmark = pytest.mark.orbstack(
    inventory={"lb": 1, "web": {"count": 2, "image": "debian:bookworm"}},
    deploy="site.py",
    group_data={"web": {"role": "backend"}, "lb": {"role": "balancer"}},
    deploy_data={"extra": "x", "count_runs": True},
    isolation="module",
)
SEEN = []

def test_groups_group_data_and_other_hosts(orb_inventory):
    (lb,) = orb_inventory["lb"]
    web = orb_inventory["web"]
    assert len(web) == 2 and len(orb_inventory) == 3 and "web" in orb_inventory
    assert [m.name for m in orb_inventory] == [lb.name] + [m.name for m in web]
    SEEN.append(sorted(m.name for m in orb_inventory))
    got = facts(lb)
    assert got["groups"] == "lb" and got["role"] == "balancer"
    assert got["color"] == "None"  # group_data/web.py is the web group's only
    assert got["everyone"] == "yes"  # group_data/all.py
    assert got["extra"] == "x"
    assert got["name"] == lb.name and got["fqdn"] == f"{lb.name}.orb.local" and got["ip"] == lb.ip
    assert got["web"] == web_line(web)  # inventory.get_group("web") from the lb host
    for machine in web:
        got = facts(machine)
        assert (got["groups"], got["role"], got["color"]) == ("web", "backend", "blue")
        assert got["name"] == machine.name and got["ip"] == machine.ip
    assert orb_inventory.host_data(lb)["orb_fqdn"] == lb.hostname

def test_the_module_shares_one_topology_deployed_once(orb_inventory):
    assert SEEN == [sorted(m.name for m in orb_inventory)]
    assert [runs(m) for m in orb_inventory] == [1, 1, 1]

def test_the_inventory_is_idempotent(orb_inventory):
    results = orb_inventory.assert_idempotent("site.py", extra="x")
    assert sorted(results) == SEEN[0]

def test_a_real_inventory_file_for_the_pyinfra_cli(orb_inventory, tmp_path):
    path = orb_inventory.write_inventory(tmp_path / "inventory.py")
    pyinfra = str(Path(sys.executable).with_name("pyinfra"))
    here = Path(__file__).parent  # pyinfra finds group_data/ in its working directory
    proc = subprocess.run(
        [pyinfra, str(path), "site.py", "-y", "--data", "extra=cli"],
        cwd=here, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for machine in orb_inventory["web"]:
        got = facts(machine)
        assert (got["extra"], got["color"], got["role"]) == ("cli", "blue", "backend")
    got = facts(orb_inventory["lb"][0])
    assert got["web"] == web_line(orb_inventory["web"]) and got["everyone"] == "yes"
"""

TEST_FUNCTION = """
import pytest
from helpers import facts, runs

SEEN = []

@pytest.mark.orbstack(inventory={"web": 1}, deploy="site.py", isolation="function",
                      deploy_data={"count_runs": True})
@pytest.mark.parametrize("n", [1, 2])
def test_a_topology_per_test(orb_inventory, n):
    (machine,) = orb_inventory["web"]
    SEEN.append(machine.name)
    assert len(set(SEEN)) == n  # a fresh machine each time
    assert runs(machine) == 1 and facts(machine)["groups"] == "web"

def test_orb_deploy_with_an_inventory(orb_vm_factory, orb_deploy):
    a, b = orb_vm_factory(), orb_vm_factory()
    results = orb_deploy("site.py", inventory={"web": [a], "db": [b]},
                         group_data={"db": {"role": "database"}}, extra="given")
    assert sorted(results) == sorted([a.name, b.name])
    got = facts(b)
    assert (got["groups"], got["role"], got["extra"]) == ("db", "database", "given")
    assert got["web"] == f"{a.hostname}/{a.ip}"
    assert (facts(a)["groups"], facts(a)["color"]) == ("web", "blue")
"""


def _suite(root: Path) -> None:
    root.mkdir()
    (root / "site.py").write_text(SITE)
    (root / "group_data").mkdir()
    (root / "group_data" / "web.py").write_text('color = "blue"\n')
    (root / "group_data" / "all.py").write_text('everyone = "yes"\n')
    (root / "helpers.py").write_text(HELPERS)
    (root / "conftest.py").write_text(
        "import sys, os\nsys.path.insert(0, os.path.dirname(__file__))\n"
    )


def test_topologies_groups_data_isolation_and_cli(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    suite = pytester.path / "suite"
    _suite(suite)
    (suite / "test_module.py").write_text(TEST_MODULE)
    (suite / "test_function.py").write_text(TEST_FUNCTION)
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess(
        str(suite),
        "-p",
        "no:cacheprovider",
        "--orbstack-required",
        f"--orbstack-report={report}",
        timeout=1500,
    )
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(["*inventory lb=[[]orbpt-*] web=[[]orbpt-*, orbpt-*]: 4 test(s)*"])
    import json

    tests = {t["nodeid"].rsplit("/", 1)[-1]: t for t in json.loads(report.read_text())["tests"]}
    groups = tests["test_module.py::test_the_inventory_is_idempotent"]["groups"]
    assert sorted(groups) == ["lb", "web"] and len(groups["web"]) == 2
    # The topology's one deploy is a `deploy` phase of all three machines (one event), as a
    # template's provisioning is; each function topology's is its machine's.
    names = sorted(groups["lb"] + groups["web"])
    data = json.loads(report.read_text())
    deploys = [e for e in data["events"] if e["kind"] == "phase" and e["phase"] == "deploy"]
    assert sorted(len(e["machines"]) for e in deploys) == [1, 1, 3]
    assert [sorted(e["machines"]) for e in deploys if len(e["machines"]) == 3] == [names]
    machines = {m["name"]: m for m in data["machines"]}
    assert all(machines[n]["phases"]["deploy"] > 0 for n in names)
    assert orb_env.wait_until_empty() == []


XDIST_TESTS = """
import os
from pathlib import Path

def _seen(orb_inventory, i):
    (lb,) = orb_inventory["lb"]
    # Tests of one shared topology take turns: another test inside this one would fail here.
    lb.run(["mkdir", "/tmp/busy"], check=True)
    assert [runs(m) for m in orb_inventory] == [1, 1]  # the one deploy, on every worker
    assert facts(lb)["web"] == web_line(orb_inventory["web"])
    names = ",".join(m.name for m in orb_inventory)
    line = f"{i} {os.environ['PYTEST_XDIST_WORKER']} {names}\\n"
    with open(Path(__file__).with_name("seen.txt"), "a") as out:
        out.write(line)
    lb.run(["rmdir", "/tmp/busy"], check=True)
"""


def test_a_module_topology_is_shared_by_every_xdist_worker(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    """Under ``-n 2 --dist load`` the module's four tests run on both workers, and every one of
    them is given the same machines, deployed once (the deploy appends a line to
    ``/tmp/deploy-runs`` on each host); the tests take turns; two fresh machines are made in
    all (one topology); the report has one ``deploy`` phase naming both; nothing is left."""
    suite = pytester.path / "suite"
    _suite(suite)
    body = TEST_MODULE.split("SEEN = []")[0].replace(
        '{"lb": 1, "web": {"count": 2, "image": "debian:bookworm"}}', '{"lb": 1, "web": 1}'
    )
    tests = "".join(
        f"\ndef test_{i}(orb_inventory):\n    _seen(orb_inventory, {i})\n" for i in range(4)
    )
    (suite / "test_xdist.py").write_text(body + XDIST_TESTS + tests)
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess(
        str(suite),
        "-p",
        "no:cacheprovider",
        "--orbstack-required",
        "-n",
        "2",
        "--dist",
        "load",
        f"--orbstack-report={report}",
        timeout=1500,
    )
    result.assert_outcomes(passed=4)
    seen = [line.split() for line in (suite / "seen.txt").read_text().splitlines()]
    assert sorted(i for i, _, _ in seen) == ["0", "1", "2", "3"]
    assert {worker for _, worker, _ in seen} == {"gw0", "gw1"}  # both workers ran some
    assert len({names for _, _, names in seen}) == 1  # ... on the same machines
    assert orb_env.made()["fresh"] == 2  # one topology for the run, not one per worker
    import json

    data = json.loads(report.read_text())
    names = seen[0][2].split(",")
    deploys = [e for e in data["events"] if e["kind"] == "phase" and e["phase"] == "deploy"]
    assert [sorted(e["machines"]) for e in deploys] == [sorted(names)]
    machines = {m["name"]: m for m in data["machines"]}
    assert all(machines[n]["tests"] == 4 and "deploy" in machines[n]["phases"] for n in names)
    groups = [t["groups"] for t in data["tests"]]
    assert len(groups) == 4 and all(g == {"lb": names[:1], "web": names[1:]} for g in groups)
    result.stdout.fnmatch_lines([f"*inventory lb=[[]{names[0]}] web=[[]{names[1]}]: 4 test(s)*"])
    assert orb_env.wait_until_empty() == []


FAILING_SITE = """
from pathlib import Path
from pyinfra import host
from pyinfra.operations import server

# Deploy code runs in the deploy process on this host, once per inventory host: count here.
with open(Path.cwd() / "attempts.txt", "a") as out:
    out.write(host.data.orb_name + "\\n")
server.shell(name="breaks", commands=["exit 3"])
"""


def test_a_failing_shared_topology_fails_every_workers_tests_once(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    """Under ``-n 2`` a module topology whose deploy fails is tried once for the run: every
    test on both workers fails with the deploy's error, and its machines are removed."""
    (pytester.path / "site.py").write_text(FAILING_SITE)
    tests = "".join(f"\ndef test_{i}(orb_inventory):\n    pass\n" for i in range(4))
    pytester.makepyfile(
        test_broken='import pytest\n\npytestmark = pytest.mark.orbstack(inventory={"web": 2}, '
        'deploy="site.py", isolation="module")\n' + tests
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--orbstack-required", "-n", "2", "--dist", "load", timeout=900
    )
    result.assert_outcomes(errors=4)  # the fixture fails: set-up errors, as for orb_vm
    result.stdout.fnmatch_lines(
        [
            "*no inventory(web=2) deploy=site.py: deploy *site.py failed*breaks*",
            "*no inventory(web=2) deploy=site.py: made by another worker, it failed: Deploy*",
        ],
        consecutive=False,
    )
    attempts = (pytester.path / "attempts.txt").read_text().split()
    assert len(attempts) == len(set(attempts)) == 2  # one run over both hosts, not per worker
    assert orb_env.wait_until_empty() == []


RELEASE = """
from io import StringIO
from pyinfra import host, inventory
from pyinfra.operations import files

web = " ".join(h.data.orb_name for h in inventory.get_group("web"))
text = f"release={RELEASE} color={host.data.get('color')} web={web}\\n"
files.put(name="release", src=StringIO(text), dest="/tmp/release")
"""

UPGRADE = """
import pytest

@pytest.mark.orbstack(inventory={"lb": 1, "web": 1}, deploy="site/site.py", deploy_from="v1",
                      isolation="function")
def test_upgrade_a_topology_from_v1(orb_inventory):
    web = " ".join(m.name for m in orb_inventory["web"])
    def release(machine):
        return machine.run(["cat", "/tmp/release"], check=True).stdout
    # provisioned with v1's site.py and v1's group_data/, across the inventory
    assert [release(m) for m in orb_inventory] == [f"release=1 color=red web={web}\\n"] * 2
    orb_inventory.deploy("site/site.py")  # today's release over it
    assert [release(m) for m in orb_inventory] == [f"release=2 color=blue web={web}\\n"] * 2
    orb_inventory.assert_idempotent("site/site.py")
"""


def test_a_topology_upgrade_from_a_git_revision(pytester: pytest.Pytester, orb_env: OrbEnv) -> None:
    """``deploy_from=`` with ``inventory=``: the machines are deployed with the site (and its
    ``group_data/``) as it was at ``v1``; the test applies today's over them."""
    import subprocess

    def git(*args: str) -> None:
        argv = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
        subprocess.run(argv, cwd=pytester.path, check=True, capture_output=True)

    site = pytester.path / "site"
    (site / "group_data").mkdir(parents=True)
    git("init", "-q")
    for release, color in (("1", "red"), ("2", "blue")):
        (site / "site.py").write_text(f"RELEASE = {release}\n" + RELEASE)
        (site / "group_data" / "web.py").write_text(f"color = {color!r}\n")
        (site / "group_data" / "lb.py").write_text(f"color = {color!r}\n")
        git("add", "-A")
        git("commit", "-qm", f"release {release}")
        if release == "1":
            git("tag", "v1")
    pytester.makepyfile(test_upgrade=UPGRADE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--orbstack-required")
    result.assert_outcomes(passed=1)
    assert orb_env.wait_until_empty() == []


BAD = """
import pytest

@pytest.mark.orbstack(inventory={"web": 0})
def test_zero(orb_inventory): pass

@pytest.mark.orbstack(inventory={"web": {"count": 1, "cpus": 2}})
def test_unknown_group_arg(orb_inventory): pass

@pytest.mark.orbstack(inventory={"all": 1})
def test_reserved(orb_inventory): pass

@pytest.mark.orbstack(inventory={"web": 1}, name="fixed")
def test_name(orb_inventory): pass

@pytest.mark.orbstack(inventory={"web": 1}, deploy="site.py", group_data={"db": {"a": 1}})
def test_unknown_group_data(orb_inventory): pass

@pytest.mark.orbstack(inventory={"web": 1})
def test_orb_vm_with_inventory(orb_vm): pass

def test_no_topology(orb_inventory): pass
"""


def test_bad_topologies_are_usage_errors_naming_the_test(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    (pytester.path / "site.py").write_text("")
    pytester.makepyfile(test_bad=BAD)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*test_bad.py::test_zero: *group 'web': count 0 must be a whole number*",
            "*test_bad.py::test_unknown_group_arg: *group 'web': unknown argument(s) cpus*",
            "*test_bad.py::test_reserved: *group name 'all' is reserved by pyinfra*",
            "*test_bad.py::test_name: *name cannot go with inventory=*",
            "*test_bad.py::test_unknown_group_data: *group_data for 'db', which is not a group*",
            "*test_bad.py::test_orb_vm_with_inventory: uses orb_vm but its marker has inventory=*",
            "*test_bad.py::test_no_topology: orb_inventory needs a topology*",
        ],
        consecutive=False,
    )
    assert orb_env.count("create") == 0 and orb_env.count("clone") == 0


def test_deploy_from_outside_a_git_repository_is_a_usage_error(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    (pytester.path / "site.py").write_text("")
    pytester.makepyfile(
        test_up="""
import pytest

@pytest.mark.orbstack(deploy="site.py", deploy_from="v1.0", isolation="function")
def test_upgrade(orb_vm): pass
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*test_up.py::test_upgrade: *deploy_from='v1.0': * is not in a git repository*"]
    )
    assert orb_env.count("create") == 0
