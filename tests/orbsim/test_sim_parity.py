"""orbsim follows OrbStack 2.2 (docs/orbctl-contract.md §16): images and versions from the one
table in ``orbsim/distros.py``, machine settings, delete by name only, the churn wedge."""

from __future__ import annotations

import json

import pytest

from orbsim import distros

from .conftest import Sim

# -- images and versions ---------------------------------------------------------------------


def test_the_table_is_the_one_source_of_releases() -> None:
    ubuntu = distros.TABLE["ubuntu"]
    assert ubuntu.default == "resolute" and ubuntu.releases["resolute"] == "26.04"
    assert "questing" in ubuntu.releases and "focal" in ubuntu.removed
    assert distros.lookup("ubuntu") == ("ubuntu", "resolute", True, "default")
    assert distros.resolve_version("ubuntu", "26.04", "resolute") == "resolute"
    assert distros.resolve_version("ubuntu", "20.04", "resolute") == "focal"
    assert not distros.version_known("ubuntu", "focal")
    for token, version in (("nixos", "25.11"), ("opensuse", "16.0"), ("fedora", "43")):
        assert distros.version_known(distros.TABLE[token].image, version)
    for d in distros.TABLE.values():
        assert d.default in d.releases
        assert not set(d.releases) & set(d.removed)


def test_a_version_number_is_reported_as_its_codename(sim: Sim) -> None:
    name = sim.name("vnum")
    sim.ok("create", "ubuntu:26.04", name)
    try:
        info = sim.json("info", "-f", "json", name)
        assert info["record"]["image"]["version"] == "resolute"
        (rec,) = [r for r in sim.json("list", "-f", "json") if r["name"] == name]
        assert rec["image"] == {**rec["image"], "distro": "ubuntu", "version": "resolute"}
    finally:
        sim.ok("delete", "-f", name)


@pytest.mark.parametrize("image", ["ubuntu:20.04", "ubuntu:focal"])
def test_a_release_no_longer_offered_fails_like_orbstack(sim: Sim, image: str) -> None:
    name = sim.name("gone")
    res = sim("create", image, name)
    arch = distros.native_arch()
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr == (
        f"[-32098] create '{name}': make rootfs: image not found: {{ubuntu focal {arch} default}}\n"
    )
    assert name not in [r["name"] for r in json.loads(sim.ok("list", "-f", "json").stdout)]


# -- machine settings ------------------------------------------------------------------------

#: CPUs the machine may use (its cpuset: ``nproc``), its CPU quota and its memory limit, as the
#: machine itself sees them (cgroup v2 or v1 files inside the machine).  The quota shows as
#: ``hidden`` where the host's LXC mounts no CPU controller in the machine (cgroup v1 hosts
#: whose ``cpu`` and ``cpuacct`` are separate hierarchies, like this project's CI).
LIMITS = (
    "nproc; "
    "if [ -f /sys/fs/cgroup/cpu.max ]; then cut -d' ' -f1 /sys/fs/cgroup/cpu.max; "
    "elif [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us;"
    " else echo hidden; fi; "
    "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
)


def limits(sim: Sim, name: str) -> tuple[int, int, str]:
    """(CPUs, memory limit in MiB or -1 for none, CPU quota in µs per 100 ms or ``hidden``)."""
    cpus, quota, memory = sim.ok("run", "-m", name, "sh", "-c", LIMITS).stdout.split()
    mib = int(memory) // 2**20 if memory.isdigit() and int(memory) < 2**50 else -1
    return int(cpus), mib, "-1" if quota == "max" else quota


ONE_CPU = {"100000", "hidden"}  # the quota of cpus=1, where the machine can see it


def test_settings_are_cgroup_limits_inside_the_machine_and_its_clone(sim: Sim) -> None:
    name, twin = sim.name("lim"), sim.name("limc")
    sim.create(name, "debian", "--cpus", "1", "--memory", "512M", "--disk", "8G")
    try:
        assert limits(sim, name)[:2] == (1, 512) and limits(sim, name)[2] in ONE_CPU
        config = sim.json("info", "-f", "json", name)["record"]["config"]
        assert config == {
            "isolated": False,
            "forward_ssh_agent": False,
            "isolate_network": False,
            "default_username": "tester",
            "http_port": None,
            "https_port": None,
            "memory_limit_mib": 512,
            "cpu_limit": 1,
            "disk_limit_bytes": 8 * 1024**3,
        }
        (listed,) = [r for r in sim.json("list", "-f", "json") if r["name"] == name]
        assert listed["config"] == {"isolated": False, "default_username": "tester"}
        shown = sim.ok("config", "show").stdout.splitlines()
        assert f"machine.{name}.cpu: 1" in shown and f"machine.{name}.memory_mib: 512" in shown
        assert f"machine.{name}.disk_bytes: {8 * 1024**3}" in shown
        # a clone inherits the config (as OrbStack's inherit isolated); a key set before its
        # first start is what it starts with
        sim.ok("stop", name)
        sim.ok("clone", name, twin)
        assert sim.json("info", "-f", "json", twin)["record"]["config"]["cpu_limit"] == 1
        assert sim.ok("config", "set", f"machine.{twin}.memory_mib", "768").stdout == ""
        sim.ok("start", twin)
        assert limits(sim, twin)[:2] == (1, 768) and limits(sim, twin)[2] in ONE_CPU
        sim.ok("start", name)
        assert limits(sim, name)[:2] == (1, 512)  # the source keeps its own
    finally:
        sim.ok("delete", "-f", name, *([twin] if sim.state(twin) else []))


def test_a_machine_without_settings_has_no_limits(sim: Sim) -> None:
    name = sim.create(sim.name("nolim"))
    try:
        cpus, memory, quota = limits(sim, name)
        assert memory == -1 and quota in ("-1", "hidden")  # no memory limit, no CPU quota
        config = sim.json("info", "-f", "json", name)["record"]["config"]
        assert not {"cpu_limit", "memory_limit_mib", "disk_limit_bytes"} & set(config)
        assert f"machine.{name}.cpu:" not in sim.ok("config", "show").stdout
    finally:
        sim.ok("delete", "-f", name)


def test_isolation_flags_are_recorded(sim: Sim) -> None:
    name = sim.create(sim.name("iso"), "debian", "--isolated", "--isolate-network",
                      "--forward-ssh-agent")  # fmt: skip
    try:
        config = sim.json("info", "-f", "json", name)["record"]["config"]
        assert (config["isolated"], config["isolate_network"], config["forward_ssh_agent"]) == (
            True, True, True)  # fmt: skip
        (listed,) = [r for r in sim.json("list", "-f", "json") if r["name"] == name]
        assert listed["config"] == {"isolated": True, "default_username": "tester"}
        sim.ok("stop", name)
        twin = sim.name("isoc")
        sim.ok("clone", name, twin)  # clones inherit isolated (§16, confirmed unchanged)
        assert sim.json("info", "-f", "json", twin)["record"]["config"]["isolated"] is True
        sim.ok("delete", "-f", twin)
    finally:
        sim.ok("delete", "-f", name)


@pytest.mark.parametrize(
    ("argv", "rc", "stderr"),
    [
        (["create", "--cpus", "two", "debian"], 1, 'invalid argument "two" for "--cpus" flag'),
        (["create", "--memory", "lots", "debian"], 1, 'invalid argument "lots" for "--memory"'),
        (["create", "--mount", "/tmp:/mnt", "debian"], 1, "orbsim cannot mount host directories"),
        (["config", "set", "machine.nosuch.cpu", "2"], 1, "machine not found: 'nosuch'"),
        (["config", "set", "machine.nosuch.cpux", "2"], 1, "Unknown machine config key: cpux"),
        (["config", "set", "machine.nosuch.cpu", "two"], 1, 'invalid value for cpu: "two"'),
    ],
)
def test_bad_settings_fail_before_anything_is_made(
    sim: Sim, argv: list[str], rc: int, stderr: str
) -> None:
    before = sim.json("list", "-f", "json")
    res = sim(*argv)
    assert res.returncode == rc and stderr in res.stderr, res
    assert sim.json("list", "-f", "json") == before


# -- delete by name only ---------------------------------------------------------------------


def test_delete_by_id_fails_like_2_2_3(sim: Sim) -> None:
    name, other = sim.create(sim.name("byid")), sim.create(sim.name("byid2"))
    mid = sim.json("info", "-f", "json", name)["record"]["id"]
    res = sim("delete", "-f", other, mid)  # a name before the id is not deleted either
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith("panic: runtime error: invalid memory address")
    assert "goroutine 1 [running]:" in res.stderr and "delete.go" in res.stderr
    assert sim.state(name) == "running" and sim.state(other) == "running"  # nothing deleted
    assert sim.ok("delete", "-f", name, other).stdout == ""  # by NAME it works
    assert sim.state(name) is None and sim.state(other) is None
