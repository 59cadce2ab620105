"""OrbStack 2.2's per-machine settings and delete by name only (contract §16): the create flags
are third-party knowledge [3P] and tolerated (a pre-2.2 OrbStack rejects them); the config keys
``info`` shows for them and ``list``'s two keys were captured on 2.2.3 [CAP] and are strict;
``delete <ID>`` panics on 2.2.3 [CAP, and in the source] and is strict."""

from __future__ import annotations

import pytest

from tests.conformance.conftest import IMAGE, USER
from tests.conformance.harness import Checks, OrbctlUnderTest

MIB = 1024**2


@pytest.mark.reference("§16 settings")
def test_create_with_limits(orbctl: OrbctlUnderTest, conf: Checks) -> None:
    name = orbctl.name("lim")
    call = orbctl("create", "-u", USER, "--cpus", "1", "--memory", "1G", "--disk", "16G",
                  IMAGE, name, timeout=900)  # fmt: skip
    accepted = conf.tolerate(
        "create takes --cpus/--memory/--disk (2.2) or rejects them as unknown flags (older)",
        f"exit {call.returncode}, stderr {call.first_err!r}",
        {"accepted (2.2)": call.returncode == 0,
         "unknown flag (before 2.2)": call.returncode != 0
         and "unknown flag: --cpus" in call.stderr},
        call=call,
    )  # fmt: skip
    if call.returncode != 0:
        if accepted:
            conf.not_observed("the limits in info's config", "this OrbStack has no limits")
        return
    info = orbctl("info", "-f", "json", name)
    conf.require("info -f json exits 0", info)
    config = info.json().get("record", {}).get("config", {})
    conf.equal("info's config has the limits set (cpu_limit, memory_limit_mib, disk_limit_bytes)",
               {k: config.get(k) for k in ("cpu_limit", "memory_limit_mib", "disk_limit_bytes")},
               {"cpu_limit": 1, "memory_limit_mib": 1024, "disk_limit_bytes": 16 * 1024 * MIB},
               call=info)  # fmt: skip
    listed = {r["name"]: r for r in orbctl("list", "-f", "json").json()}.get(name) or {}
    conf.equal("list's config is still {isolated, default_username}",
               sorted(listed.get("config") or {}), ["default_username", "isolated"],
               call=info)  # fmt: skip
    inside = orbctl("run", "-m", name, "nproc")
    conf.tolerate("nproc in the machine is its CPU limit", inside.stdout.strip(),
                  {"1 (a cgroup/cpuset limit)": inside.stdout.strip() == "1",
                   "the VM's CPUs (limit not visible to nproc)": inside.returncode == 0},
                  call=inside)  # fmt: skip
    stop = orbctl("stop", name)
    conf.require("stop (a clone source)", stop)
    twin = orbctl.name("limc")
    conf.require("clone of a machine with limits", orbctl("clone", name, twin, timeout=600))
    twin_info = orbctl("info", "-f", "json", twin)
    twin_config = (twin_info.json() if twin_info.returncode == 0 else {}).get("record", {})
    twin_config = twin_config.get("config", {})
    conf.tolerate("a clone inherits its source's limits (undocumented)",
                  twin_config.get("cpu_limit"),
                  {"inherited": twin_config.get("cpu_limit") == 1,
                   "not inherited (set machine.NAME.cpu after the clone)":
                   twin_config.get("cpu_limit") is None}, call=twin_info)  # fmt: skip
    key = f"machine.{twin}.cpu"
    set_call = orbctl("config", "set", key, "2")
    conf.tolerate(f"config set {key} 2", f"exit {set_call.returncode}",
                  {"accepted (2.2)": set_call.returncode == 0}, call=set_call)  # fmt: skip
    after = orbctl("info", "-f", "json", twin)
    cpu = (after.json() if after.returncode == 0 else {}).get("record", {}).get("config", {})
    conf.equal("... and info's cpu_limit follows it", cpu.get("cpu_limit"), 2, call=after)


@pytest.mark.reference("§16 settings")
def test_isolated_machine(orbctl: OrbctlUnderTest, conf: Checks) -> None:
    name = orbctl.name("iso")
    call = orbctl("create", "-u", USER, "--isolated", IMAGE, name, timeout=900)
    conf.tolerate("create takes --isolated (2.1+) or rejects it (older)",
                  f"exit {call.returncode}, stderr {call.first_err!r}",
                  {"accepted (2.1+)": call.returncode == 0,
                   "unknown flag (before 2.1)": "unknown flag: --isolated" in call.stderr},
                  call=call)  # fmt: skip
    if call.returncode != 0:
        return
    listed = {r["name"]: r for r in orbctl("list", "-f", "json").json()}.get(name) or {}
    conf.equal("list shows it isolated", (listed.get("config") or {}).get("isolated"), True,
               call=call)  # fmt: skip
    conf.require("stop (a clone source)", orbctl("stop", name))
    twin = orbctl.name("isoc")
    conf.require("clone of an isolated machine", orbctl("clone", name, twin, timeout=600))
    listed = {r["name"]: r for r in orbctl("list", "-f", "json").json()}.get(twin) or {}
    conf.equal("a clone inherits isolated (§16, confirmed unchanged)",
               (listed.get("config") or {}).get("isolated"), True, call=call)  # fmt: skip


@pytest.mark.reference("§16 delete")
def test_delete_by_id_panics(orbctl: OrbctlUnderTest, conf: Checks, main: str) -> None:
    a, b = orbctl.name("delid"), orbctl.name("delid")
    conf.require("clone (a machine to delete)", orbctl("clone", main, a))
    conf.require("clone (another one)", orbctl("clone", main, b))
    info = orbctl("info", "-f", "json", a)
    conf.require("info -f json exits 0", info)
    mid = str(info.json().get("record", {}).get("id"))
    call = orbctl("delete", "-f", b, mid)
    conf.error("delete by id crashes (a Go panic, exit 2): only NAME works", call,
               "^panic: runtime error: invalid memory address", exit_code=2)  # fmt: skip
    conf.that("... with a goroutine trace on stderr", "goroutine " in call.stderr,
              expected="a goroutine trace", got=call.stderr[-200:], call=call)  # fmt: skip
    conf.equal("... and nothing was deleted", [orbctl.state(a) is not None,
               orbctl.state(b) is not None], [True, True], call=call)  # fmt: skip
    by_name = orbctl("delete", "-f", a, b)
    conf.equal("delete by NAME works", (by_name.returncode, orbctl.state(a), orbctl.state(b)),
               (0, None, None), section="§2 delete", call=by_name)  # fmt: skip
