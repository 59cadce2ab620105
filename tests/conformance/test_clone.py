"""Clone semantics: the new machine is stopped and inherits the source's image and user; the
source is held while the clone runs (contract §2 clone)."""

from __future__ import annotations

import time

import pytest

from pytest_orbstack.errors import MachineExistsError, MachineNotFoundError, TransientError
from tests.conformance.conftest import USER
from tests.conformance.harness import Checks, OrbctlUnderTest

#: orbsim only: makes the clone slow enough to be seen in progress (OrbStack ignores it).
SLOW_CLONE = {"ORBSIM_LATENCY": "clone=4"}


@pytest.mark.reference("§2 clone")
def test_clone_is_stopped_and_inherits(orbctl: OrbctlUnderTest, conf: Checks, running: str) -> None:
    new = orbctl.name("cl")
    call = orbctl("clone", running, new, timeout=600)
    conf.require("clone SRC NEW exits 0", call)
    conf.equal("clone prints nothing on stdout", call.stdout, "", section="§1", call=call)
    info = orbctl.info(new) or {}
    rec = info.get("record", info)
    src_info = orbctl.info(running) or {}
    src = src_info.get("record", src_info)  # either info shape: only §3's test judges it
    conf.equal("the new machine is 'stopped'", rec.get("state"), "stopped", call=call)
    conf.equal("a clone comes up stopped (confirmed on 2.2.x)", rec.get("state"), "stopped",
               section="§16 unchanged", call=call)  # fmt: skip
    addresses = sorted(k for k in info if k.startswith("ip"))
    conf.tolerate(
        "a stopped clone's info has no ip4/ip6 (S1; 2.2.3 only from a 3P fixture)",
        addresses,
        {"no ip4/ip6": addresses == [], "addresses shown while stopped": addresses != []},
        section="§16 settings",
        call=call,
    )
    conf.equal("it inherits the default user", rec.get("config", {}).get("default_username"),
               USER, call=call)  # fmt: skip
    conf.equal("it inherits config.isolated (confirmed on 2.2.x)",
               rec.get("config", {}).get("isolated", "absent"),
               src.get("config", {}).get("isolated", "absent"),
               section="§16 unchanged", call=call)  # fmt: skip
    conf.equal(
        "it inherits the image (distro, version, arch)",
        [rec.get("image", {}).get(k) for k in ("distro", "version", "arch")],
        [src.get("image", {}).get(k) for k in ("distro", "version", "arch")],
        call=call,
    )
    conf.that("it has its own id", rec.get("id") not in (None, src.get("id")),
              expected="an id other than the source's", got=rec.get("id"), call=call)  # fmt: skip
    conf.equal("the source is running again afterwards", src.get("state"), "running", call=call)
    start = orbctl("start", new)
    conf.require("the clone starts", start)
    host = orbctl("run", "-m", new, "hostname")
    conf.equal("the clone's hostname is its own name", host.stdout.strip(), new, call=host)
    orbctl("delete", "-f", new)


@pytest.mark.reference("§2 clone")
def test_source_is_held_during_clone(
    orbctl: OrbctlUnderTest, conf: Checks, stopped_clone: str
) -> None:
    """While a clone runs, start and rename of its source fail with 'operations are in
    progress: clone' (a transient error for the plugin)."""
    new = orbctl.name("held")
    proc = orbctl.spawn("clone", stopped_clone, new, env=SLOW_CLONE)
    deadline = time.monotonic() + 60
    seen = False
    while time.monotonic() < deadline and proc.poll() is None:
        rec = orbctl.records().get(new)
        if rec is not None and rec.get("state") in ("creating", "provisioning"):
            seen = True
            break
        time.sleep(0.05)
    if not seen:
        conf.not_observed("the source is held while the clone runs",
                          "the clone finished before it could be seen in progress")  # fmt: skip
    else:
        start = orbctl("start", stopped_clone)
        rename = orbctl("rename", stopped_clone, orbctl.name("held"))
        if proc.poll() is None:
            conf.error("start of the held source fails", start,
                       "[-32098] cannot start: operations are in progress: clone",
                       classified=TransientError)  # fmt: skip
            conf.error("rename of the held source fails", rename,
                       "[-32098] cannot rename: operations are in progress: clone",
                       classified=TransientError)  # fmt: skip
        else:
            conf.not_observed("the source is held while the clone runs",
                              "the clone finished during the checks")  # fmt: skip
    out, err = proc.communicate(timeout=600)
    conf.equal("the slow clone still succeeds", proc.returncode, 0)
    conf.equal("its machine is stopped", orbctl.state(new), "stopped")
    orbctl("delete", "-f", new)
    if orbctl.state(stopped_clone) == "running":
        orbctl("stop", stopped_clone)


@pytest.mark.reference("§2 clone")
def test_clone_errors(orbctl: OrbctlUnderTest, conf: Checks, main: str, stopped_clone: str) -> None:
    missing = orbctl.name("missing")
    call = orbctl("clone", missing, orbctl.name("x"))
    conf.error("clone of an unknown machine", call, f"[-32098] machine not found: '{missing}'",
               classified=MachineNotFoundError)  # fmt: skip
    call = orbctl("clone", main, stopped_clone)
    conf.error("clone onto an existing name", call,
               f"[-32098] machine already exists: '{stopped_clone}'",
               classified=MachineExistsError)  # fmt: skip
    bad = f"{orbctl.prefix}_bad"
    call = orbctl("clone", main, bad)
    conf.error("clone to an invalid name", call, f"[-32098] invalid machine name '{bad}'",
               section="§6")  # fmt: skip
    conf.equal("no machine was made by the failed clones", orbctl.state(bad), None)
