"""Output fidelity of the simulator against docs/orbctl-contract.md §1-§6 and §9."""

from __future__ import annotations

import json
import re

from tests.orbsim.conftest import Sim

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
RECORD_KEYS = ["id", "name", "image", "config", "builtin", "state"]


def test_empty_list_and_status(fresh_sim: Sim) -> None:
    res = fresh_sim.ok("list", "-f", "json")
    assert res.stdout == "[]\n"
    res = fresh_sim.ok("list")
    assert res.stdout == ""
    assert res.stderr == '\nUse "orbsim create" to create a machine.\n'
    assert fresh_sim.ok("list", "-q").stdout == ""
    res = fresh_sim("status")
    assert (res.returncode, res.stdout) == (0, "Running\n")
    res = fresh_sim("default")
    assert (res.returncode, res.stderr) == (1, "[-32098] no machines found\n")


def test_list_and_info_shapes(fresh_sim: Sim) -> None:
    sim = fresh_sim
    sim.ok("create", "-u", "alice", "ubuntu:22.04", "web-server")
    raw = sim.ok("list", "-f", "json").stdout
    assert raw.endswith("}\n]\n") and raw.startswith('[\n  {\n    "id": ')
    (rec,) = json.loads(raw)
    assert list(rec) == RECORD_KEYS
    assert ULID.match(rec["id"])
    assert rec["name"] == "web-server"
    assert rec["image"] == {
        "distro": "ubuntu",
        "version": "jammy",
        "arch": "amd64",
        "variant": "default",
    }
    assert list(rec["config"]) == ["isolated", "default_username"]
    assert rec["config"] == {"isolated": False, "default_username": "alice"}
    assert (rec["builtin"], rec["state"]) == (False, "running")

    info = sim.json("info", "web-server", "-f", "json")
    assert list(info) == ["record", "disk_size", "ip4", "ip6"]
    # info's config is 2.2.3's longer one (docs/orbctl-contract.md §16), list's the two keys
    assert {k: v for k, v in info["record"].items() if k != "config"} == {
        k: v for k, v in rec.items() if k != "config"
    }
    assert info["record"]["config"] == {
        "isolated": False,
        "forward_ssh_agent": False,
        "isolate_network": False,
        "default_username": "alice",
        "http_port": None,
        "https_port": None,
    }
    assert isinstance(info["disk_size"], int) and info["disk_size"] > 0
    octets = info["ip4"].split(".")
    assert octets[:3] == ["192", "168", "139"] and 10 <= int(octets[3]) <= 247
    assert info["ip6"].startswith("fd07:b51a:cc66:0:")
    assert sim.json("info", rec["id"], "-f", "json")["record"]["name"] == "web-server"

    text = sim.ok("info", "web-server").stdout.splitlines()
    assert text[:7] == [
        f"ID: {rec['id']}",
        "Name: web-server",
        "State: running",
        "",
        "Distro: ubuntu",
        "Version: jammy",
        "Architecture: amd64",
    ]
    assert any(line.startswith("IPv4: 192.168.139.") for line in text)
    row = sim.ok("list").stdout.split()
    assert row[:5] == ["web-server", "running", "ubuntu", "jammy", "amd64"]
    assert sim.ok("list", "-q").stdout == "web-server\n"
    assert sim.ok("default").stdout == "web-server\n"  # first machine becomes the default

    sim.ok("stop", "web-server")
    info = sim.json("info", "web-server", "-f", "json")
    assert list(info) == ["record", "disk_size"]
    assert info["record"]["state"] == "stopped"
    assert sim.ok("list", "-r", "-f", "json").stdout == "[]\n"
    assert sim.ok("start", "web-server").stdout == ""
    assert sim.ok("start", "web-server").stdout == ""  # idempotent
    assert sim.state("web-server") == "running"


def test_error_lines_and_codes(sim: Sim, machine: str) -> None:
    cases = [
        (["create", "foo"], "Error: invalid distro: foo\n"),
        (["create", "-a", "sparc", "ubuntu", "x1"], "Error: invalid architecture: sparc\n"),
        (
            ["create", "ubuntu", "bad_name"],
            "[-32098] create 'bad_name': invalid machine name 'bad_name'\n",
        ),
        (["create", "ubuntu", "x"], "[-32098] create 'x': invalid machine name 'x'\n"),
        (
            ["create", "debian", "docker"],
            "[-32098] create 'docker': invalid machine name 'docker'\n",
        ),
        (
            ["create", "debian", machine],
            f"[-32098] create '{machine}': machine already exists: '{machine}'\n",
        ),
        (
            ["create", "ubuntu:99.99", "v1"],
            "[-32098] create 'v1': make rootfs: image not found: {ubuntu 99.99 amd64 default}\n",
        ),
        (
            ["create", "-c", "/dev/null", "arch", "a1"],
            "[-32098] create 'a1': cloud-init not supported for 'archlinux'\n",
        ),
        (
            ["create", "-c", "/dev/null", "void", "a2"],
            "[-32098] create 'a2': cloud-init not supported for 'voidlinux'\n",
        ),
        (["info", "nope"], "[-32098] machine not found: 'nope'\n"),
        (["start", "nope"], "[-32098] machine not found: 'nope'\n"),
        (["rename", machine, "bad_x"], "[-32098] invalid machine name 'bad_x'\n"),
        (["clone", "nope", "c1"], "[-32098] machine not found: 'nope'\n"),
    ]
    for argv, first_line in cases:
        res = sim(*argv)
        assert res.returncode == 1, argv
        assert res.stdout == "", argv
        assert res.stderr.startswith(first_line), (argv, res.stderr)
    res = sim("create", "foo")
    assert "Usage:\n  orbctl create [flags] DISTRO[:VERSION] [MACHINE_NAME]" in res.stderr
    res = sim("bogus")
    assert res.returncode == 1
    assert res.stderr.startswith('Error: unknown command "bogus" for "orbctl"\n')
    res = sim("info")
    assert res.stderr.startswith("Error: accepts 1 arg(s), received 0\n")
    res = sim("restart")
    assert res.stderr.startswith("Error: no machines specified\n")
    res = sim("list", "-f", "yaml")
    assert (res.returncode, res.stderr.splitlines()[0]) == (1, "Error: invalid format: yaml")
    res = sim("create", "-p", "debian", "pw1")  # no TTY: cannot prompt
    assert res.returncode == 1 and res.stderr.startswith("Error: ")
    res = sim("run", "-m", machine, "--", "true")
    assert (res.returncode, res.stderr.splitlines()[0]) == (1, "Error: unknown flag --")
    res = sim("run", "-m")
    assert res.stderr.startswith("Error: missing value for flag -m")
    assert sim.state(machine) == "running"


def test_delete_resolves_all_names_first(sim: Sim) -> None:
    a = sim.create()
    res = sim("delete", "-f", a, "no-such-machine")
    assert (res.returncode, res.stderr) == (1, "[-32098] machine not found: 'no-such-machine'\n")
    assert sim.state(a) == "running"
    assert sim.ok("delete", "-f", a).stdout == ""
    assert sim.state(a) is None


def test_rename_default_config_version(fresh_sim: Sim) -> None:
    sim = fresh_sim
    a = sim.create("alpha")
    b = sim.create("beta", "alpine")
    res = sim("rename", a, b)
    assert res.stderr == "[-32098] machine '\"beta\"' already exists\n"
    sim.ok("rename", a, "gamma")
    assert sim.ok("run", "-m", "gamma", "hostname").stdout == "gamma\n"
    assert sim.ok("default").stdout == "gamma\n"
    sim.ok("default", b)
    assert sim.ok("get-default").stdout == "beta\n"
    assert sim.ok("run", "cat", "/etc/hostname").stdout == "beta\n"  # no -m: default machine
    cfg = sim.ok("config", "show").stdout
    assert "machine.gamma.username: tester\n" in cfg
    assert cfg.splitlines() == sorted(cfg.splitlines())
    res = sim("config", "set", "nope.key", "1")
    assert (res.returncode, res.stderr) == (1, "Unknown configuration key: nope.key\n")
    assert sim.ok("config", "set", "memory_mib", "4096").stdout.startswith("Restart OrbStack")
    assert "memory_mib: 4096\n" in sim.ok("config", "show").stdout
    sim.ok("config", "set", "machine.gamma.username", "bob")
    assert sim.json("info", "gamma", "-f", "json")["record"]["config"]["default_username"] == "bob"
    ver = sim.ok("version").stdout.splitlines()
    assert ver[0] == "Version: 2.2.3 (2020300)"  # §16: the release orbsim follows
    assert ver[1] == f"Commit: {'0' * 40} (v2.2.3)"  # the all-zero commit: not OrbStack
    assert "created" in sim.ok("logs", b).stdout


def test_stop_everything_then_status(fresh_sim: Sim) -> None:
    sim = fresh_sim
    a = sim.create()
    sim.ok("stop")  # no names: "stops OrbStack"
    res = sim("status")
    assert (res.returncode, res.stdout) == (1, "Stopped\n")
    res = sim("stop", a)
    assert (res.returncode, res.stderr) == (0, "OrbStack is not running\n")
    assert sim.state(a) == "stopped"  # list auto-starts OrbStack but not the machine
    assert sim("status").returncode == 0
    res = sim("start")
    assert res.returncode == 0 and "already running" in res.stderr


def test_orb_dispatch(sim: Sim, machine: str) -> None:
    res = sim("-m", machine, "-u", "root", "id", "-un", prog="orb")
    assert (res.returncode, res.stdout) == (0, "root\n")
    assert sim("list", "-q", prog="orb").returncode == 0  # known subcommand: control mode
    res = sim("-m", machine, "sh", "-c", "exit 3", prog="orb")
    assert res.returncode == 3
    assert sim("--help", prog="orb").returncode == 0
