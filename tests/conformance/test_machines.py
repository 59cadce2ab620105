"""Machines: create, the JSON of ``list``/``info``, states and transitions, delete
(contract §2, §3, §4, §5)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conformance.conftest import IMAGE_JSON, USER
from tests.conformance.harness import Checks, OrbctlUnderTest

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
RECORD_KEYS = ["id", "name", "image", "config", "builtin", "state"]
IMAGE_KEYS = ["distro", "version", "arch", "variant"]
STATES = {"creating", "provisioning", "starting", "running", "stopping", "stopped", "deleting"}


def _record(info: dict[str, Any] | None) -> dict[str, Any]:
    if not info:
        return {}
    rec = info.get("record", info)
    return rec if isinstance(rec, dict) else {}


@pytest.mark.reference("§3 list")
def test_list_json_record(orbctl: OrbctlUnderTest, conf: Checks, running: str) -> None:
    call = orbctl("list", "-f", "json")
    conf.require("list -f json exits 0", call)
    data = call.json()
    conf.that(
        "list -f json prints a JSON array",
        isinstance(data, list),
        expected="a JSON array",
        got=type(data).__name__,
        call=call,
    )
    conf.that(
        "list -f json is indented by 2 spaces and ends with a newline",
        call.stdout.startswith("[\n  {") and call.stdout.endswith("]\n"),
        expected="'[\\n  {' ... ']\\n'",
        got=call.stdout[:12] + "..." + call.stdout[-4:],
        call=call,
    )
    rec = next((r for r in data if r.get("name") == running), {})
    conf.equal("a record has id, name, image, config, builtin, state in that order",
               list(rec), RECORD_KEYS, call=call)  # fmt: skip
    conf.that("id is a ULID", bool(ULID.match(str(rec.get("id", "")))),
              expected="26 Crockford base32 characters", got=rec.get("id"), call=call)  # fmt: skip
    image = rec.get("image") or {}
    conf.equal("image has distro, version, arch, variant", list(image), IMAGE_KEYS, call=call)
    conf.equal(
        "image.distro is the image name and a version alias is stored as its codename",
        (image.get("distro"), image.get("version")),
        IMAGE_JSON,
        section="§5",
        call=call,
    )
    conf.that("image.arch is amd64, arm64 or i386", image.get("arch") in {"amd64", "arm64", "i386"},
              expected="amd64|arm64|i386", got=image.get("arch"), call=call)  # fmt: skip
    conf.equal("image.variant is 'default' without user data", image.get("variant"), "default",
               call=call)  # fmt: skip
    config = rec.get("config") or {}
    conf.that(
        "config has isolated (bool) and default_username (extra keys allowed, §11)",
        isinstance(config.get("isolated"), bool) and "default_username" in config,
        expected="{'isolated': bool, 'default_username': str, ...}",
        got=config,
        call=call,
    )
    conf.equal("config.default_username is create's -u", config.get("default_username"), USER,
               section="§2 create", call=call)  # fmt: skip
    conf.equal("builtin is false", rec.get("builtin"), False, call=call)
    conf.equal("state is 'running' after create", rec.get("state"), "running",
               section="§2 create", call=call)  # fmt: skip
    builtins = [r.get("name") for r in data if r.get("builtin")]
    conf.equal("built-in machines are not listed", builtins, [], section="§2 list", call=call)
    quiet = orbctl("list", "-q")
    conf.that("list -q prints one name per line", running in quiet.stdout.splitlines(),
              expected=f"a line {running!r}", got=quiet.stdout.splitlines()[:5],
              section="§2 list", call=quiet)  # fmt: skip
    quiet_json = orbctl("list", "-q", "-f", "json")
    conf.equal("-q takes precedence over -f", quiet_json.stdout, quiet.stdout,
               section="§2 list", call=quiet_json)  # fmt: skip


#: ``info``'s ``record.config`` keys on 2.2.3 without limits (docs/orbctl-contract.md §16 [CAP]).
INFO_CONFIG_2_2 = ("isolated", "forward_ssh_agent", "isolate_network", "default_username",
                   "http_port", "https_port")  # fmt: skip


@pytest.mark.reference("§3 info")
def test_info_json_running(orbctl: OrbctlUnderTest, conf: Checks, running: str) -> None:
    call = orbctl("info", "-f", "json", running)
    conf.require("info -f json exits 0", call)
    info = call.json()
    conf.equal("info -f json is {record, disk_size, ip4, ip6} while running", list(info),
               ["record", "disk_size", "ip4", "ip6"], call=call)  # fmt: skip
    listed = {r["name"]: r for r in orbctl("list", "-f", "json").json()}.get(running)
    record = _record(info)
    conf.equal("info's record is list's record (but its config)",
               {k: v for k, v in record.items() if k != "config"},
               {k: v for k, v in (listed or {}).items() if k != "config"}, call=call)  # fmt: skip
    info_config, list_config = record.get("config") or {}, (listed or {}).get("config") or {}
    conf.equal("list's config is {isolated, default_username}", sorted(list_config),
               ["default_username", "isolated"], section="§16 settings", call=call)  # fmt: skip
    conf.tolerate(
        "info's config is list's (2.0) or 2.2.3's longer one", sorted(info_config),
        {"list's keys (2.0)": info_config == list_config,
         "2.2.3's keys, list's values (§16 [CAP])": set(INFO_CONFIG_2_2) <= set(info_config)
         and all(info_config.get(k) == v for k, v in list_config.items())},
        section="§16 settings", call=call,
    )  # fmt: skip
    size = info.get("disk_size", "absent")
    conf.that("disk_size is bytes (int) or null", size is None or isinstance(size, int),
              expected="int or null", got=size, call=call)  # fmt: skip
    conf.match("ip4 is an IPv4 address", str(info.get("ip4")), r"^\d+\.\d+\.\d+\.\d+$", call=call)
    conf.that("ip6 is an IPv6 address", ":" in str(info.get("ip6", "")),
              expected="an IPv6 address", got=info.get("ip6"), call=call)  # fmt: skip
    by_id = orbctl("info", "-f", "json", str(_record(info).get("id")))
    conf.equal("info finds a machine by its id", _record(by_id.json() if by_id.returncode == 0
               else None).get("name"), running, section="§2 info", call=by_id)  # fmt: skip
    text = orbctl("info", running)
    lines = text.stdout.splitlines()
    conf.equal(
        "info's text starts ID/Name/State, blank, Distro/Version/Architecture",
        [line.split(":", 1)[0] for line in lines[:7]],
        ["ID", "Name", "State", "", "Distro", "Version", "Architecture"],
        section="§2 info",
        call=text,
    )
    probe = orbctl("run", "-m", running, "true")
    conf.equal("a created machine answers 'run true' at once (readiness)", probe.returncode, 0,
               section="§4", call=probe)  # fmt: skip


@pytest.mark.reference("§2 stop/start")
def test_states_and_transitions(orbctl: OrbctlUnderTest, conf: Checks, running: str) -> None:
    call = orbctl("stop", running)
    conf.require("stop NAME exits 0", call)
    conf.equal("stop prints nothing on stdout", call.stdout, "", section="§1", call=call)
    info = orbctl.info(running) or {}
    conf.equal("a stopped machine's state is 'stopped'", _record(info).get("state"), "stopped",
               section="§3", call=call)  # fmt: skip
    addresses = sorted(k for k in info if k.startswith("ip"))
    conf.tolerate(  # S1 leaves them out; on 2.2.3 only a 3P fixture says so (§16)
        "ip4/ip6 are absent while stopped",
        addresses,
        {"no ip4/ip6": addresses == [], "addresses shown while stopped": addresses != []},
        section="§3 info",
        call=call,
    )
    listed = orbctl("list", "-r", "-f", "json")
    conf.that("list -r leaves out stopped machines",
              running not in {r["name"] for r in listed.json()},
              expected=f"{running!r} absent", got=[r["name"] for r in listed.json()][:5],
              section="§2 list", call=listed)  # fmt: skip
    again = orbctl("stop", running)
    conf.equal("stopping a stopped machine is a no-op (exit 0)", again.returncode, 0, call=again)
    start = orbctl("start", running)
    conf.require("start NAME exits 0", start)
    conf.equal("start prints nothing on stdout", start.stdout, "", section="§1", call=start)
    conf.equal("a started machine is 'running'", orbctl.state(running), "running", call=start)
    again = orbctl("start", running)
    conf.equal("starting a running machine is a no-op (exit 0)", again.returncode, 0, call=again)
    info = orbctl.wait(running, lambda i: bool(i and i.get("ip4")), timeout=60) or {}
    conf.tolerate(
        "after start the IPv4 address appears (at once or after a lag: inferred)",
        info.get("ip4"),
        {"ip4 present within 60 s": bool(info.get("ip4"))},
        section="§4",
    )
    restart = orbctl("restart", running)
    conf.equal("restart NAME exits 0", restart.returncode, 0, section="§2 restart", call=restart)
    conf.equal("restart leaves it running", orbctl.state(running), "running",
               section="§2 restart", call=restart)  # fmt: skip
    conf.require("stop again", orbctl("stop", running))
    run = orbctl("run", "-m", running, "true")
    conf.equal("run starts a stopped machine and runs the command", run.returncode, 0,
               section="§2 run", call=run)  # fmt: skip
    conf.equal("... which is then running", orbctl.state(running), "running",
               section="§2 run", call=run)  # fmt: skip
    logs = orbctl("logs", running)
    conf.equal("logs NAME exits 0", logs.returncode, 0, section="§2 logs", call=logs)
    default = orbctl("default")
    conf.that("default prints a machine name (exit 0) while machines exist",
              default.returncode == 0 and bool(default.stdout.strip()),
              expected="exit 0 and a name", got=(default.returncode, default.stdout.strip()),
              section="§2 default", call=default)  # fmt: skip


@pytest.mark.reference("§2 delete")
def test_delete(orbctl: OrbctlUnderTest, conf: Checks, main: str) -> None:
    a = orbctl.name("del")
    conf.require("clone (a machine to delete)", orbctl("clone", main, a))
    missing = orbctl.name("missing")
    call = orbctl("delete", "-f", a, missing)
    conf.error("delete resolves every name first: one unknown name fails the call", call,
               f"[-32098] machine not found: '{missing}'")  # fmt: skip
    conf.that("... and nothing was deleted", orbctl.state(a) is not None,
              expected=f"{a!r} still exists", got=orbctl.state(a), call=call)  # fmt: skip
    call = orbctl("delete", a)
    conf.equal("delete without -f does not ask when stdin is not a terminal", call.returncode, 0,
               section="§1 tty", call=call)  # fmt: skip
    conf.equal("delete prints nothing on stdout", call.stdout, "", section="§1", call=call)
    gone = orbctl("info", a)
    conf.error("a deleted machine is not found", gone, f"[-32098] machine not found: '{a}'")
    call = orbctl("delete", "-f", a)
    conf.error("deleting it again: not found", call, f"[-32098] machine not found: '{a}'")


@pytest.mark.reference("§2 rename")
def test_rename(orbctl: OrbctlUnderTest, conf: Checks, main: str) -> None:
    a, b = orbctl.name("ren"), orbctl.name("ren")
    conf.require("clone (a machine to rename)", orbctl("clone", main, a))
    call = orbctl("rename", a, b)
    conf.equal("rename exits 0 and prints nothing", (call.returncode, call.stdout), (0, ""),
               call=call)  # fmt: skip
    conf.equal("the old name is gone", orbctl.state(a), None, call=call)
    conf.equal("the new name is the machine (still stopped)", orbctl.state(b), "stopped",
               call=call)  # fmt: skip
    same = orbctl("rename", b, b)
    conf.equal("renaming to the same name is a no-op", same.returncode, 0, call=same)
    orbctl("delete", "-f", b)
