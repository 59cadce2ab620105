"""A create whose client dies: OrbStack's server goes on and finishes the machine
(contract §2 create), so a naive retry meets 'already exists' and the plugin must inspect
state instead.  While the machine is being created, delete and start are refused with
'cannot transition from creating to ...' (a state error: poll, then decide)."""

from __future__ import annotations

import time

import pytest

from pytest_orbstack.errors import MachineExistsError, StateError
from tests.conformance.conftest import IMAGE
from tests.conformance.harness import Checks, OrbctlUnderTest

#: orbsim only: a create slow enough to be killed in the middle (OrbStack takes that long).
SLOW_CREATE = {"ORBSIM_LATENCY": "create=4"}
IN_PROGRESS = ("creating", "provisioning")


@pytest.mark.reference("§2 create")
def test_killed_create_goes_on(orbctl: OrbctlUnderTest, conf: Checks) -> None:
    name = orbctl.name("killed")
    proc = orbctl.spawn("create", IMAGE, name, env=SLOW_CREATE)
    seen = orbctl.wait(
        name,
        lambda i: (
            proc.poll() is not None
            or (i is not None and i.get("record", i).get("state") in IN_PROGRESS)
        ),
        timeout=120,
    )
    if proc.poll() is not None:
        proc.communicate()
        conf.not_observed("a killed create goes on", "the create ended before it was killed")
        return
    conf.that("list/info show a machine being created as 'creating' or 'provisioning'",
              seen is not None, expected="info finds the machine", got=seen)  # fmt: skip
    orbctl.kill(proc)  # the client dies, as on a timeout (its whole process group)
    after = orbctl.info(name)
    state = (after or {}).get("record", after or {}).get("state")
    conf.that("the machine is still there right after its client was killed",
              state in (*IN_PROGRESS, "starting", "running"),
              expected="creating|provisioning|starting|running", got=state)  # fmt: skip
    retry = orbctl("create", IMAGE, name)
    conf.error("a naive retry meets 'already exists'", retry,
               f"[-32098] create '{name}': machine already exists: '{name}'",
               section="§9 create", classified=MachineExistsError)  # fmt: skip
    if orbctl.state(name) in IN_PROGRESS:
        delete = orbctl("delete", "-f", name)
        start = orbctl("start", name)
        run = orbctl("run", "-m", name, "true")
        if orbctl.state(name) in IN_PROGRESS:
            conf.error("delete while creating is refused", delete,
                       "[-32098] cannot transition from creating to deleting",
                       section="§9 state", classified=StateError)  # fmt: skip
            conf.error("start while creating is refused", start,
                       "[-32098] cannot transition from creating to starting",
                       section="§9 state", classified=StateError)  # fmt: skip
            conf.equal("run in a machine still being created exits 1", run.returncode, 1,
                       section="§2 run", call=run)  # fmt: skip
        else:
            conf.not_observed("commands on a machine still creating", "creation finished")
    done = orbctl.wait(
        name,
        lambda i: i is None or i.get("record", i).get("state") not in (*IN_PROGRESS, "starting"),
        timeout=900,
    )
    final = (done or {}).get("record", done or {}).get("state")
    conf.equal("the create went on to finish: the machine ends up running", final, "running")
    conf.that("... with its IPv4 address", bool((done or {}).get("ip4")),
              expected="ip4 present", got=(done or {}).get("ip4"), section="§4")  # fmt: skip
    if final is not None:
        deadline = time.monotonic() + 120
        while orbctl.state(name) is not None and time.monotonic() < deadline:
            orbctl("delete", "-f", name)
