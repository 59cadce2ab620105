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
