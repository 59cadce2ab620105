"""OrbStack 2.1-2.2 (contract §16): the behaviours users and third-party tools report on 2.2.x.

Each test names its §16 point in its reference (``§16 images``, ``§16 versions``, ``§16
status``, ``§16 unchanged``), so a Mac user running the suite on 2.2.x sees, per point, what
their OrbStack does.  Points tagged [OBS]/[CAP] in §16 are checked strictly; [3P] or
unverified ones are tolerated (the report records which behaviour held).  The points about
machine settings (create flags, ``machine.NAME.*`` keys, ``info``'s 2.2.3 config keys,
``delete <ID>``) are checked in ``test_settings.py``; the churn wedge cannot be caused on a Mac
(orbsim's ``ORBSIM_WEDGE_AFTER`` fault: ``tests/orbsim``, ``tests/reliability``).

Ubuntu machines on orbsim: without an image server orbsim substitutes Debian stable, *visibly*
(docs/simulator.md "Images"); the checks of what ``info``/``list`` report hold either way, and
whether the machine really runs the release asked for is tolerated as "os-release says so" or
"orbctl says it substituted an image" (the latter is orbsim's offline stand-in; OrbStack never
says it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pytest_orbstack.errors import MachineExistsError, MachineNotFoundError, PermanentError
from tests.conformance.conftest import IMAGE
from tests.conformance.harness import Checks, OrbctlUnderTest
from tests.conformance.plugin import orbctl_choice

#: (request, the codename info/list report, os-release VERSION_ID prefix): §16 images.
UBUNTU_REQUESTS = [
    pytest.param("ubuntu", "resolute", "26.04", id="§16-default-ubuntu-is-resolute"),
    pytest.param("ubuntu:26.04", "resolute", "26.04", id="§16-ubuntu-26.04-is-resolute"),
    pytest.param("ubuntu:24.04", "noble", "24.04", id="§16-ubuntu-24.04-is-noble"),
]


def _record(info: dict[str, Any] | None) -> dict[str, Any]:
    if not info:
        return {}
    rec = info.get("record", info)
    return rec if isinstance(rec, dict) else {}


@pytest.mark.reference("§16 images")
@pytest.mark.parametrize(("request_", "codename", "number"), UBUNTU_REQUESTS)
def test_ubuntu_release_reported_as_codename(
    orbctl: OrbctlUnderTest, conf: Checks, request_: str, codename: str, number: str
) -> None:
    """§16 images: the default Ubuntu is ``resolute`` (26.04) [OBS]; version numbers are accepted
    since 2.2.0 [OBS] and ``info``/``list`` report the codename [CAP]."""
    name = orbctl.name("ubuntu")
    create = orbctl("create", request_, name, timeout=900)
    try:
        conf.require(f"create {request_} exits 0", create)
        conf.equal("create prints nothing on stdout", create.stdout, "", call=create)
        info = orbctl.info(name)
        image = _record(info).get("image") or {}
        conf.equal(
            f"info reports {request_} as ubuntu {codename}",
            (image.get("distro"), image.get("version")),
            ("ubuntu", codename),
            call=create,
        )
        listed = _record(orbctl.records().get(name)).get("image") or {}
        conf.equal(
            "list reports the same codename",
            listed.get("version"),
            codename,
            call=create,
        )
        release = orbctl("run", "-m", name, "sh", "-c", '. /etc/os-release; echo "$VERSION_ID"')
        text = orbctl("info", name)
        conf.tolerate(
            f"the machine runs Ubuntu {number}",
            (
                release.stdout.strip(),
                [ln for ln in text.stdout.splitlines() if "SUBSTITUTED" in ln][:1],
            ),
            {
                f"os-release VERSION_ID is {number}": release.returncode == 0
                and release.stdout.strip().startswith(number),
                "orbctl says it substituted another image (orbsim without an image server)": (
                    "SUBSTITUTED" in text.stdout
                ),
            },
            call=release,
        )
    finally:
        orbctl("delete", "-f", name, timeout=300)


@pytest.mark.reference("§16 images")
@pytest.mark.parametrize(
    "request_",
    [
        pytest.param("ubuntu:focal", id="§16-removed-release-ubuntu-focal"),
        pytest.param("ubuntu:20.04", id="§16-removed-release-ubuntu-20.04"),
    ],
)
def test_removed_release_is_image_not_found(
    orbctl: OrbctlUnderTest, conf: Checks, request_: str
) -> None:
    """§16 images: Ubuntu 20.04 (focal) is gone from the image index [OBS #2152]: creating it
    fails ``make rootfs: image not found: {ubuntu focal ARCH default}``.  For ``ubuntu:20.04``
    whether the number is turned into ``focal`` before the index is asked is not known: the text
    may name either (tolerated)."""
    name = orbctl.name("gone")
    call = orbctl("create", request_, name, timeout=600)
    try:
        conf.error(
            f"create {request_} fails: image not found",
            call,
            rf"^\[-32098\] create '{name}': make rootfs: image not found: "
            r"\{ubuntu (focal|20\.04) \w+ default\}$",
            classified=PermanentError,
        )
        shown = re.search(r"image not found: \{ubuntu (\S+) ", call.first_err)
        if request_.endswith("focal"):
            conf.equal("the text names the release focal", shown and shown.group(1), "focal",
                       call=call)  # fmt: skip
        else:
            conf.tolerate(
                "the text names the release asked for by number",
                shown and shown.group(1),
                {
                    "as its codename focal": bool(shown and shown.group(1) == "focal"),
                    "as the number 20.04": bool(shown and shown.group(1) == "20.04"),
                },
                call=call,
            )
        conf.equal("the failed create leaves no machine", orbctl.state(name), None, call=call)
    finally:
        if orbctl.state(name) is not None:
            orbctl("delete", "-f", name, timeout=300)


@pytest.mark.reference("§16 versions")
def test_version_strings(orbctl: OrbctlUnderTest, conf: Checks) -> None:
    """§16 unchanged [CAP]: ``Version: 2.2.3 (2020300)`` then ``Commit: SHA (v2.2.3)``."""
    call = orbctl("version")
    lines = call.stdout.splitlines()
    first = lines[0] if lines else ""
    m = re.fullmatch(r"Version: (\d+\.\d+\.\d+) \((\d+)\)", first)
    conf.that(
        "the first line is 'Version: X.Y.Z (BUILD)'",
        m is not None,
        expected="'Version: 2.2.3 (2020300)'-shaped",
        got=first,
        call=call,
    )
    version = m.group(1) if m else "?"
    conf.match(
        "the second line is 'Commit: SHA (vX.Y.Z)' with the same version",
        lines[1] if len(lines) > 1 else "",
        rf"^Commit: [0-9a-f]+ \(v{re.escape(version)}\)$",
        call=call,
    )
    if m:
        major, minor, patch = (int(p) for p in version.split("."))
        formula = major * 1_000_000 + minor * 10_000 + patch * 100
        conf.tolerate(
            "the build number (one data point: 2.2.3 is 2020300)",
            int(m.group(2)),
            {
                f"MAJOR*10^6 + MINOR*10^4 + PATCH*100 = {formula}": int(m.group(2)) == formula,
                "another numbering (build above that)": int(m.group(2)) > formula,
            },
            call=call,
        )


@pytest.mark.reference("§16 status")
def test_status_exit_codes(
    orbctl: OrbctlUnderTest, conf: Checks, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """§16 unchanged: ``status`` prints ``Running`` (exit 0) / ``Stopped`` (exit 1); and the
    unverified [3P] claim that on 2.2.3 ``status`` itself boots the VM (S1: it only reads).

    A stopped OrbStack is only made with this project's orbsim, in a home of its own: the suite
    never stops a real OrbStack (it would stop the user's machines)."""
    call = orbctl("status")
    conf.equal("status prints Running, exit 0, while OrbStack runs",
               (call.stdout, call.returncode), ("Running\n", 0), call=call)  # fmt: skip
    _, default = orbctl_choice(request.config)
    if not default:
        conf.not_observed("status prints Stopped, exit 1, while OrbStack is stopped",
                          "the suite never stops a real OrbStack")  # fmt: skip
        conf.not_observed("status does not start a stopped OrbStack (3P: it does on 2.2.3)",
                          "the suite never stops a real OrbStack")  # fmt: skip
        return
    apart = {"ORBSIM_HOME": str(tmp_path / "stopped-home")}  # orbsim only; a home of its own
    conf.require("stop (all of a throw-away orbsim home)", orbctl("stop", env=apart))
    call = orbctl("status", env=apart)
    conf.equal("status prints Stopped, exit 1, while OrbStack is stopped",
               (call.stdout, call.returncode), ("Stopped\n", 1), call=call)  # fmt: skip
    again = orbctl("status", env=apart)
    conf.tolerate(
        "status does not start a stopped OrbStack (S1; a 3P note says it does on 2.2.3)",
        (again.stdout, again.returncode),
        {
            "still Stopped: status only reads (S1)": again.stdout == "Stopped\n",
            "Running: status booted the VM (3P claim)": again.stdout == "Running\n",
        },
        call=again,
    )
    orbctl("start", env=apart)


@pytest.mark.reference("§16 unchanged")
def test_error_texts_unchanged(orbctl: OrbctlUnderTest, conf: Checks, main: str) -> None:
    """§16 unchanged on 2.2.x: ``[-32098] machine not found: 'X'`` (exit 1, empty stdout) and
    ``create 'N': machine already exists: 'N'``; there are still no snapshots (#488 open)."""
    missing = orbctl.name("missing")
    call = orbctl("info", missing)
    conf.error("machine not found (exit 1, nothing on stdout)", call,
               f"[-32098] machine not found: '{missing}'",
               classified=MachineNotFoundError)  # fmt: skip
    call = orbctl("create", IMAGE, main)
    conf.error("machine already exists", call,
               f"[-32098] create '{main}': machine already exists: '{main}'",
               classified=MachineExistsError)  # fmt: skip
    call = orbctl("snapshot")
    conf.error("there is no snapshot command (#488 open)", call,
               '^Error: unknown command "snapshot" for "orb(ctl)?"')  # fmt: skip
