"""Error texts of create, rename and friends, and how the plugin classifies them (contract §9).

Only errors that can be caused without harm on a real OrbStack are here (nothing made outside
the suite's prefix); network, IP and shutdown failures are checked against orbsim's fault
injection in ``tests/contract``."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_orbstack.errors import MachineExistsError, MachineNotFoundError, PermanentError
from tests.conformance.conftest import IMAGE
from tests.conformance.harness import Checks, OrbctlUnderTest


@pytest.mark.reference("§9 create")
def test_create_errors(orbctl: OrbctlUnderTest, conf: Checks, main: str, tmp_path: Path) -> None:
    name = orbctl.name("err")
    call = orbctl("create", "conf-no-such-distro", name)
    conf.error("an unknown distro is refused by the client", call,
               "Error: invalid distro: conf-no-such-distro", classified=PermanentError)  # fmt: skip
    conf.that("... with the usage text", "Usage:" in call.stderr, expected="'Usage:' in stderr",
              got=call.stderr[:120], section="§1 errors", call=call)  # fmt: skip
    call = orbctl("create", "-a", "sparc", IMAGE, name)
    conf.error("an unknown architecture is refused by the client", call,
               "Error: invalid architecture: sparc", classified=PermanentError)  # fmt: skip
    bad = f"{orbctl.prefix}_bad"
    call = orbctl("create", IMAGE, bad)
    conf.error("an invalid name (here '_') is a server error prefixed create 'NAME':", call,
               f"[-32098] create '{bad}': invalid machine name '{bad}'",
               classified=PermanentError)  # fmt: skip
    call = orbctl("create", IMAGE, main)
    conf.error("an existing name", call,
               f"[-32098] create '{main}': machine already exists: '{main}'",
               classified=MachineExistsError)  # fmt: skip
    user_data = tmp_path / "user-data.yaml"
    user_data.write_text("#cloud-config\nruncmd: [true]\n")
    call = orbctl("create", "-c", str(user_data), "arch", name)
    conf.error("cloud-init on a distro without it", call,
               f"[-32098] create '{name}': cloud-init not supported for 'archlinux'",
               classified=PermanentError)  # fmt: skip
    call = orbctl("create", "debian:99", name, timeout=600)
    conf.error("a version the image index does not know", call,
               rf"^\[-32098\] create '{name}': make rootfs: image not found: "
               r"\{debian 99 \w+ default\}$", classified=PermanentError)  # fmt: skip
    conf.equal("failed creates leave no machine", sorted(orbctl.records()).count(name), 0)


@pytest.mark.reference("§9 not found")
@pytest.mark.parametrize("command", [("info",), ("start",), ("stop",), ("delete", "-f")])
def test_not_found(orbctl: OrbctlUnderTest, conf: Checks, command: tuple[str, ...]) -> None:
    missing = orbctl.name("missing")
    call = orbctl(*command, missing)
    conf.error(f"{command[0]} of an unknown machine", call,
               f"[-32098] machine not found: '{missing}'",
               classified=MachineNotFoundError)  # fmt: skip


@pytest.mark.reference("§9 rename")
def test_rename_errors(
    orbctl: OrbctlUnderTest, conf: Checks, main: str, stopped_clone: str
) -> None:
    missing = orbctl.name("missing")
    call = orbctl("rename", missing, orbctl.name("x"))
    conf.error("rename of an unknown machine", call, f"[-32098] machine not found: '{missing}'",
               classified=MachineNotFoundError)  # fmt: skip
    call = orbctl("rename", stopped_clone, main)
    conf.error("rename onto an existing name quotes it twice ('%q')", call,
               f"[-32098] machine '\"{main}\"' already exists",
               classified=MachineExistsError)  # fmt: skip
    bad = f"{orbctl.prefix}_bad"
    call = orbctl("rename", stopped_clone, bad)
    conf.error("rename to an invalid name", call, f"[-32098] invalid machine name '{bad}'",
               classified=PermanentError)  # fmt: skip


@pytest.mark.reference("§2 logs")
def test_logs_of_unknown_machine(orbctl: OrbctlUnderTest, conf: Checks) -> None:
    missing = orbctl.name("missing")
    call = orbctl("logs", missing)
    conf.equal("logs prints a server error on stdout and exits 0", call.returncode, 0, call=call)
    conf.that("... the text is 'machine not found'", "machine not found" in call.stdout,
              expected="'machine not found' on stdout", got=call.stdout.strip(),
              call=call)  # fmt: skip
