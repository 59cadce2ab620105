"""Topology validation (``inventory=`` marker) and inventory files, without machines."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from pytest_orbstack.deploy.inventory_file import inventory_source
from pytest_orbstack.errors import ConfigError
from pytest_orbstack.topology import TopologySpec, build_topology, demand_units


def build(values: dict[str, Any], base: Path) -> TopologySpec:
    return build_topology(values, where="t::x", base_dir=base, default_image="debian:bookworm")


def test_counts_group_arguments_and_defaults(tmp_path: Path) -> None:
    (tmp_path / "site.py").write_text("")
    topo = build(
        {
            "inventory": {"lb": 1, "web": {"count": 2, "image": "ubuntu:24.04"}},
            "user": "ops",
            "deploy": "site.py",
            "group_data": {"web": {"port": 80}},
            "isolation": "module",
        },
        tmp_path,
    )
    (lb, web) = topo.groups
    assert (lb.name, lb.count, lb.spec.image, lb.spec.user) == ("lb", 1, "debian:bookworm", "ops")
    assert (web.count, web.spec.image, web.spec.user) == (2, "ubuntu:24.04", "ops")
    assert {g.spec.isolation for g in topo.groups} == {"module"}
    assert topo.deploy == str((tmp_path / "site.py").resolve())
    assert topo.group_data == {"web": {"port": 80}}
    units = demand_units(topo, "t.py")
    assert [u for _, u in units] == ["t.py#lb0", "t.py#web0", "t.py#web1"]
    assert demand_units(topo, None) == []
    assert hash(topo) == hash(build({**topo_values(tmp_path)}, tmp_path))


def topo_values(base: Path) -> dict[str, Any]:
    return {
        "inventory": {"lb": 1, "web": {"count": 2, "image": "ubuntu:24.04"}},
        "user": "ops",
        "deploy": "site.py",
        "group_data": {"web": {"port": 80}},
        "isolation": "module",
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"inventory": {}}, "non-empty dict"),
        ({"inventory": {"web": 0}}, "count 0 must be a whole number"),
        ({"inventory": {"web": True}}, "count True must be a whole number"),
        ({"inventory": {"web": {"image": "debian"}}}, "needs a count"),
        ({"inventory": {"web": {"count": 1, "deploy": "x.py"}}}, "unknown argument(s) deploy"),
        ({"inventory": {"all": 1}}, "reserved by pyinfra"),
        ({"inventory": {"_web": 1}}, "starts with '_'"),
        ({"inventory": {"web-1": 1}}, "must be a Python identifier"),
        ({"inventory": {"class": 1}}, "must be a Python identifier"),
        ({"inventory": {"web": 1}, "name": "x"}, "name cannot go with inventory="),
        ({"inventory": {"web": 1}, "isolation": "worker"}, "isolation='worker'"),
        ({"inventory": {"web": {"count": 1, "image": "nope:1"}}}, "unknown distro 'nope'"),
        ({"inventory": {"web": 1}, "group_data": {"web": {"a": 1}}}, "add deploy="),
    ],
)
def test_bad_topologies(values: dict[str, Any], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^t::x") as info:
        build(values, tmp_path)
    assert message in str(info.value)


def test_group_data_must_name_groups_and_be_deploy_data(tmp_path: Path) -> None:
    (tmp_path / "site.py").write_text("")
    base = {"inventory": {"web": 1}, "deploy": "site.py"}
    with pytest.raises(ConfigError, match="group_data for 'db', which is not a group"):
        build({**base, "group_data": {"db": {}}}, tmp_path)
    with pytest.raises(ConfigError, match="orb_name"):
        build({**base, "group_data": {"web": {"orb_name": "x"}}}, tmp_path)
    with pytest.raises(ConfigError, match="cannot be passed to a deploy"):
        build({**base, "group_data": {"web": {"x": object()}}}, tmp_path)


def test_inventory_source_is_what_pyinfra_reads() -> None:
    text = inventory_source(
        {"web": [("m1", {"orb_ip": "10.0.0.1", "ok": True}), ("m2", {})], "db": [("m3", {})]},
        {"web": {"port": 80, "none": None}},
    )
    tree = ast.parse(text)
    values = {
        node.targets[0].id: ast.literal_eval(node.value)  # type: ignore[attr-defined]
        for node in tree.body
        if isinstance(node, ast.Assign)
    }
    assert values == {
        "web": (
            [("@orb/m1", {"ok": True, "orb_ip": "10.0.0.1"}), ("@orb/m2", {})],
            {"none": None, "port": 80},
        ),
        "db": ([("@orb/m3", {})], {}),
    }
