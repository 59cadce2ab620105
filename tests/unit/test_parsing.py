"""JSON parsing of list/info output, from the shapes in docs/orbctl-contract.md §3."""

from __future__ import annotations

import json

import pytest

from pytest_orbstack.orbctl import MachineInfo, parse_machine_info, parse_machine_list

RECORD = {
    "id": "01K2G8TY5GM9C3CN95KCB4ZG8B",
    "name": "web-server",
    "image": {"distro": "ubuntu", "version": "noble", "arch": "arm64", "variant": "default"},
    "config": {"isolated": False, "default_username": "alice"},
    "builtin": False,
    "state": "running",
}


def test_list_reference_example() -> None:
    [rec] = parse_machine_list(json.dumps([RECORD], indent=2) + "\n")
    assert rec.name == "web-server"
    assert rec.id == "01K2G8TY5GM9C3CN95KCB4ZG8B"
    assert (rec.image.distro, rec.image.version, rec.image.arch) == ("ubuntu", "noble", "arm64")
    assert rec.default_username == "alice"
    assert rec.running and not rec.builtin and not rec.isolated


@pytest.mark.parametrize("text", ["[]\n", "null\n", ""])
def test_empty_list(text: str) -> None:
    assert parse_machine_list(text) == []


def test_wrapped_info_shape() -> None:
    data = {
        "record": RECORD,
        "disk_size": 962924544,
        "ip4": "192.168.139.76",
        "ip6": "fd07:b51a:cc66:0:b476:dbff:fe73:161e",
    }
    info = parse_machine_info(json.dumps(data))
    assert info.name == "web-server" and info.state == "running"
    assert info.disk_size == 962924544
    assert info.ip4 == "192.168.139.76"
    assert info.ready


def test_flat_info_shape_before_2025() -> None:
    info = parse_machine_info(json.dumps(RECORD))
    assert info.name == "web-server"
    assert info.ip4 is None and info.disk_size is None
    assert not info.ready  # running, but no address known


def test_stopped_info_has_no_ip() -> None:
    data = {"record": {**RECORD, "state": "stopped"}, "disk_size": None}
    info = MachineInfo.from_json(data)
    assert info.ip4 is None and info.ip6 is None and info.disk_size is None
    assert not info.ready


def test_unknown_extra_keys_are_tolerated() -> None:
    record = {
        **RECORD,
        "config": {**RECORD["config"], "isolate_network": True, "cpu": 2},
        "labels": {"x": "y"},
    }
    data = {"record": record, "disk_size": 1, "ip4": "1.2.3.4", "future": [1, 2]}
    info = parse_machine_info(json.dumps(data))
    assert info.record.extra == {"labels": {"x": "y"}}
    assert info.ip4 == "1.2.3.4"


def test_v1_record_with_top_level_running() -> None:
    [rec] = parse_machine_list(
        json.dumps([{"id": "x", "name": "old", "image": {}, "isolated": True, "running": True}])
    )
    assert rec.state == "running" and rec.isolated


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_machine_info, '{"a": 1}'),
        (parse_machine_list, "[1]"),
        (parse_machine_info, '"x"'),
        (parse_machine_list, '{"name": "x"}'),
    ],
)
def test_garbage_is_rejected(parse: object, text: str) -> None:
    with pytest.raises(ValueError):
        parse(text)  # type: ignore[operator]
