"""Spec building (spec.py): validation with messages that name the origin and the fix, the
hashes that decide which machines are interchangeable, and machine names.

Pure: no orbctl, no machines; files only under ``tmp_path``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pytest_orbstack.errors import ConfigError
from pytest_orbstack.spec import (
    DEFAULT_IMAGE,
    ISOLATIONS,
    MARKER_KEYS,
    MAX_NAME,
    PREFIX,
    RESERVED_NAMES,
    MachineSpec,
    build_spec,
    machine_name,
    marker_signature,
    slugify,
)

WHERE = "test_web.py::test_nginx: @pytest.mark.orbstack(...)"
NAME_RULE = re.compile(r"^[a-z0-9][a-z0-9-]+$")


def build(values: dict[str, Any], base_dir: Path, **kwargs: Any) -> MachineSpec:
    return build_spec(values, where=WHERE, base_dir=base_dir, **kwargs)


def config_error(values: dict[str, Any], base_dir: Path) -> str:
    with pytest.raises(ConfigError) as info:
        build(values, base_dir)
    message = str(info.value)
    assert message.startswith(WHERE + ": "), f"the error does not name its origin: {message}"
    return message


# -- defaults ----------------------------------------------------------------------------------


def test_empty_marker_is_the_default_session_machine(tmp_path: Path) -> None:
    spec = build({}, tmp_path)
    assert spec == MachineSpec(image=DEFAULT_IMAGE, isolation="session")


def test_configured_default_image_applies_when_no_image_given(tmp_path: Path) -> None:
    assert build({}, tmp_path, default_image="ubuntu:24.04").image == "ubuntu:24.04"
    assert build({"image": None}, tmp_path, default_image="alpine").image == "alpine"
    assert build({"image": "fedora"}, tmp_path, default_image="alpine").image == "fedora"


def test_every_marker_key_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "ud.yaml").write_text("#cloud-config\n")
    (tmp_path / "deploy.py").write_text("")
    values = {
        "image": "ubuntu:24.04",
        "isolation": "session",
        "arch": "arm64",
        "user": "dev",
        "user_data": "ud.yaml",
        "deploy": "deploy.py",
        "deploy_data": {"port": 8080},
        "deploy_config": {"SUDO": True},
        "name": "web-1",
        "cpus": 2,
        "memory": "2G",
        "disk": "16G",
        "isolated_from_mac": False,
    }
    # inventory= and group_data= describe a topology (tests/unit/test_topology.py);
    # deploy_from= needs a git repository (tests/unit/test_revisions.py)
    assert set(values) | {"inventory", "group_data", "deploy_from"} == set(MARKER_KEYS)
    spec = build(values, tmp_path)
    assert (spec.image, spec.arch, spec.user, spec.name) == (
        "ubuntu:24.04",
        "arm64",
        "dev",
        "web-1",
    )
    assert spec.user_data == str((tmp_path / "ud.yaml").resolve())
    assert (spec.deploy_data, spec.deploy_config) == ({"port": 8080}, {"SUDO": True})
    assert spec.deploy == str((tmp_path / "deploy.py").resolve())


# -- unknown keys ------------------------------------------------------------------------------


def test_unknown_keys_are_named_with_the_accepted_list(tmp_path: Path) -> None:
    message = config_error({"imgae": "debian", "cpu": 2}, tmp_path)
    assert "cpu, imgae" in message
    for key in MARKER_KEYS:
        assert key in message.split("accepted:")[1]


# -- image -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    ["debian", "debian:bookworm", "ubuntu:24.04", "alpine:3.20", "fedora:40", "nixos:24.05"],
)
def test_good_images(tmp_path: Path, image: str) -> None:
    assert build({"image": image}, tmp_path).image == image


@pytest.mark.parametrize(
    "image",
    ["Debian", "debian:", "debian:bookworm:x", "debian bookworm", "docker.io/debian", ":12", 12],
)
def test_bad_image_strings_say_the_format(tmp_path: Path, image: object) -> None:
    message = config_error({"image": image}, tmp_path)
    assert repr(image) in message
    assert "DISTRO:VERSION" in message
    assert "debian:bookworm" in message  # an example to copy


def test_unknown_distro_lists_what_orbstack_offers(tmp_path: Path) -> None:
    message = config_error({"image": "windows:11"}, tmp_path)
    assert "unknown distro 'windows'" in message
    assert "ubuntu" in message and "alpine" in message


# -- isolation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_isolations(tmp_path: Path, isolation: str) -> None:
    assert build({"isolation": isolation}, tmp_path).isolation == isolation


@pytest.mark.parametrize("isolation", ["class", "Function", "", None, "per-test"])
def test_bad_isolation(tmp_path: Path, isolation: object) -> None:
    message = config_error({"isolation": isolation}, tmp_path)
    assert f"isolation={isolation!r}" in message
    assert "session, module, function" in message


# -- arch --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "orbstack"),
    [
        ("amd64", "amd64"),
        ("x86_64", "amd64"),
        ("X86_64", "amd64"),
        ("arm64", "arm64"),
        ("aarch64", "arm64"),
        ("AArch64", "arm64"),
        ("i386", "i386"),
        ("386", "i386"),
        (None, None),
    ],
)
def test_arch_spellings(tmp_path: Path, typed: str | None, orbstack: str | None) -> None:
    assert build({"arch": typed}, tmp_path).arch == orbstack


def test_arch_spellings_make_the_same_machine(tmp_path: Path) -> None:
    a = build({"arch": "x86_64"}, tmp_path)
    b = build({"arch": "amd64"}, tmp_path)
    assert a.base_hash() == b.base_hash()
    assert a.slot() == b.slot()


@pytest.mark.parametrize("arch", ["riscv64", "x86", "arm", "", 64])
def test_bad_arch(tmp_path: Path, arch: object) -> None:
    message = config_error({"arch": arch}, tmp_path)
    assert f"arch={arch!r}" in message
    assert "amd64, arm64, i386" in message
    assert "omit it" in message


# -- user --------------------------------------------------------------------------------------


@pytest.mark.parametrize("user", ["dev", "_svc", "a", "web-admin", "u1", "a" * 32])
def test_good_users(tmp_path: Path, user: str) -> None:
    assert build({"user": user}, tmp_path).user == user


@pytest.mark.parametrize("user", ["root", "Dev", "1dev", "-dev", "de v", "a" * 33, "", 7])
def test_bad_users(tmp_path: Path, user: object) -> None:
    message = config_error({"user": user}, tmp_path)
    assert f"user={user!r}" in message
    assert "not root" in message and "lower-case" in message


# -- name --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["web", "db-1", "0x", "a" * 40])
def test_good_names(tmp_path: Path, name: str) -> None:
    assert build({"name": name}, tmp_path).name == name


@pytest.mark.parametrize("name", ["Web", "-web", "w", "web_1", "web.1", "a" * 41, "", 3])
def test_bad_names_state_the_rule(tmp_path: Path, name: object) -> None:
    message = config_error({"name": name}, tmp_path)
    assert f"name={name!r}" in message
    assert "2-40 characters of a-z, 0-9 and '-'" in message


@pytest.mark.parametrize("name", sorted(RESERVED_NAMES))
def test_reserved_names(tmp_path: Path, name: str) -> None:
    message = config_error({"name": name}, tmp_path)
    assert "reserved by OrbStack" in message
    assert "choose another" in message


@pytest.mark.parametrize("isolation", ["module", "function"])
def test_fixed_name_needs_session_isolation(tmp_path: Path, isolation: str) -> None:
    message = config_error({"name": "web", "isolation": isolation}, tmp_path)
    assert "needs isolation='session'" in message
    assert "drop name= or the isolation" in message


# -- paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["user_data", "deploy"])
def test_relative_paths_resolve_against_base_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    tests_dir = tmp_path / "tests"
    (tests_dir / "files").mkdir(parents=True)
    target = tests_dir / "files" / "thing"
    target.write_text("x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory must not matter
    spec = build({key: "files/thing"}, tests_dir)
    assert getattr(spec, key) == str(target.resolve())
    assert Path(getattr(spec, key)).is_absolute()


def test_absolute_and_path_objects_are_accepted(tmp_path: Path) -> None:
    target = tmp_path / "deploy.py"
    target.write_text("")
    other = tmp_path / "other"
    other.mkdir()
    assert build({"deploy": str(target)}, other).deploy == str(target.resolve())
    assert build({"deploy": target}, other).deploy == str(target.resolve())


@pytest.mark.parametrize("key", ["user_data", "deploy"])
def test_missing_file_names_the_resolved_path(tmp_path: Path, key: str) -> None:
    message = config_error({key: "nope.yaml"}, tmp_path)
    assert f"{key}='nope.yaml'" in message
    assert str(tmp_path / "nope.yaml") in message
    assert "relative to the test file's directory" in message


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "deploys").mkdir()
    message = config_error({"deploy": "deploys"}, tmp_path)
    assert "no such file" in message


@pytest.mark.parametrize("value", ["", 5])
def test_path_must_be_a_path(tmp_path: Path, value: object) -> None:
    assert "must be a path to a file" in config_error({"user_data": value}, tmp_path)


# -- hashes ------------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    ud = tmp_path / "user-data.yaml"
    ud.write_text("#cloud-config\npackages: [nginx]\n")
    deploy = tmp_path / "deploy.py"
    deploy.write_text("from pyinfra.operations import apt\n")
    return {"user_data": ud, "deploy": deploy}


def test_hashes_are_stable_across_builds(tmp_path: Path, files: dict[str, Path]) -> None:
    values = {"image": "ubuntu:24.04", "user": "dev", "user_data": "user-data.yaml"}
    a, b = build(values, tmp_path), build(dict(values), tmp_path)
    assert a.base_hash() == b.base_hash()
    assert a.content_hash("fp") == b.content_hash("fp")
    assert a.slot() == b.slot()
    assert re.fullmatch(r"[0-9a-f]{64}", a.base_hash())
    assert re.fullmatch(r"[0-9a-f]{10}", a.slot())


def test_isolation_does_not_change_what_machine_is_made(tmp_path: Path) -> None:
    a = build({"isolation": "function"}, tmp_path)
    b = build({"isolation": "session"}, tmp_path)
    assert a.base_hash() == b.base_hash()
    assert a.slot() == b.slot()


@pytest.mark.parametrize(
    "change",
    [{"image": "ubuntu:24.04"}, {"arch": "arm64"}, {"user": "other"}, {"user_data": None}],
)
def test_base_hash_sees_what_create_makes(
    tmp_path: Path, files: dict[str, Path], change: dict[str, Any]
) -> None:
    values: dict[str, Any] = {"image": "debian", "user": "dev", "user_data": "user-data.yaml"}
    assert build(values, tmp_path).base_hash() != build({**values, **change}, tmp_path).base_hash()


def test_user_data_content_changes_base_hash_not_slot(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    spec = build({"user_data": "user-data.yaml"}, tmp_path)
    before_base, before_content, before_slot = spec.base_hash(), spec.content_hash(), spec.slot()
    files["user_data"].write_text("#cloud-config\npackages: [apache2]\n")
    assert spec.base_hash() != before_base
    assert spec.content_hash() != before_content
    assert spec.slot() == before_slot  # same identity: a stale reused machine is found by slot


def test_deploy_fingerprint_changes_content_hash_only(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    spec = build({"deploy": "deploy.py"}, tmp_path)
    assert spec.content_hash("fp-1") != spec.content_hash("fp-2")
    assert spec.content_hash("fp-1") == spec.content_hash("fp-1")
    assert spec.content_hash(None) != spec.content_hash("fp-1")
    base, slot = spec.base_hash(), spec.slot()
    files["deploy"].write_text("# edited\n")  # the deploy's content reaches us as fingerprint
    assert (spec.base_hash(), spec.slot()) == (base, slot)


def test_deploy_changes_content_not_base(tmp_path: Path, files: dict[str, Path]) -> None:
    plain = build({}, tmp_path)
    deployed = build({"deploy": "deploy.py"}, tmp_path)
    assert plain.base_hash() == deployed.base_hash()  # a template can be cloned from one base
    assert plain.content_hash("fp") != deployed.content_hash("fp")
    assert plain.slot() != deployed.slot()


# -- machine names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "parts",
    [
        ("a1b2c3", "s", "0123abcd"),
        ("a1b2c3", "tests/test_web.py::TestNginx::test_serves[ubuntu:24.04-ARM]"),
        ("RUN", "___", "---", "日本語"),
        ("x" * 200, "y" * 200, "z" * 200),
        ("a1b2c3", "", "fn"),
        (),
    ],
)
def test_machine_name_is_a_valid_hostname_label(parts: tuple[str, ...]) -> None:
    name = machine_name(*parts)
    assert NAME_RULE.match(name), name
    assert len(name) <= MAX_NAME == 63
    assert name.startswith(PREFIX)
    assert not name.endswith("-")
    assert "--" not in name


def test_machine_name_keeps_the_parts_readable() -> None:
    assert machine_name("a1b2c3", "tpl", "Deadbeef") == "orbpt-a1b2c3-tpl-deadbeef"


def test_machine_name_is_deterministic() -> None:
    assert machine_name("run", "test_x[1]") == machine_name("run", "test_x[1]")


@pytest.mark.parametrize(
    ("text", "slug"),
    [("Test_Web[1]", "test-web-1"), ("---", "t"), ("", "t"), ("a" * 30, "a" * 20)],
)
def test_slugify(text: str, slug: str) -> None:
    assert slugify(text) == slug


# -- the marker's help -------------------------------------------------------------------------


def test_marker_signature_lists_every_key() -> None:
    signature = marker_signature()
    assert signature.startswith("orbstack(") and signature.endswith(")")
    listed = re.findall(r"(\w+)=", signature)
    assert listed == list(MARKER_KEYS)


@pytest.mark.parametrize(
    ("image", "os_id", "versions", "matches"),
    [
        ("debian:bookworm", "debian", ["bookworm", "12"], True),
        ("debian:12", "debian", ["bookworm", "12"], True),
        ("debian", "debian", ["trixie"], True),
        ("debian:trixie", "debian", ["bookworm", "12"], False),
        ("ubuntu:noble", "debian", ["bookworm", "12"], False),
        ("ubuntu:24.04", "ubuntu", ["noble", "24.04"], True),
        ("ubuntu:26.04", "ubuntu", ["resolute", "26.04"], True),  # 2.2: version numbers
        ("ubuntu:26.04", "ubuntu", ["noble", "24.04"], False),
        ("ubuntu:26.04", "debian", ["bookworm", "12"], False),  # a visible substitute
        ("ubuntu:resolute", "ubuntu", ["resolute", "26.04"], True),
        ("nixos:25.11", "nixos", ["xantusia", "25.11"], True),
        ("opensuse:16.0", "opensuse-leap", ["16.0"], True),
        ("fedora:43", "fedora", ["43"], True),
        ("alpine:3.20", "alpine", ["3.20.3"], True),
        ("alpine:3.2", "alpine", ["3.20.3"], False),
        ("alma:9", "almalinux", ["9.4"], True),
        ("opensuse:15.6", "opensuse-leap", ["15.6"], True),
        ("arch", "arch", [], True),
        ("fedora:40", "unknown", [], True),  # a machine that says nothing is not accused
    ],
)
def test_image_matches_what_the_machine_says_it_runs(
    image: str, os_id: str, versions: list[str], matches: bool
) -> None:
    from pytest_orbstack.spec import image_matches

    assert image_matches(image, os_id, versions) is matches


# -- OrbStack 2.2 per-machine settings (docs/orbctl-contract.md §16) -------------------------


def test_machine_settings_reach_create_flags_and_config_keys(tmp_path: Path) -> None:
    spec = build_spec(
        {"cpus": 2, "memory": "4G", "disk": "64G", "isolated_from_mac": True},
        where="t",
        base_dir=tmp_path,
    )
    assert (spec.cpus, spec.memory_mib, spec.disk_bytes) == (2, 4096, 64 * 1024**3)
    opts = spec.create_options()
    assert opts.argv() == ["--cpus", "2", "--memory", "4G", "--disk", "64G", "--isolated"]
    assert opts.machine_config() == {
        "cpu": "2",
        "memory_mib": "4096",
        "disk_bytes": str(64 * 1024**3),
    }
    assert build_spec({"memory": 1536}, where="t", base_dir=tmp_path).create_options().argv() == [
        "--memory",
        "1536M",
    ]
    assert "cpus=2" in spec.describe() and spec.pristine().cpus == 2


def test_machine_settings_are_part_of_the_identity(tmp_path: Path) -> None:
    plain = build_spec({}, where="t", base_dir=tmp_path)
    small = build_spec({"cpus": 1}, where="t", base_dir=tmp_path)
    isolated = build_spec({"isolated_from_mac": True}, where="t", base_dir=tmp_path)
    hashes = {s.base_hash() for s in (plain, small, isolated)}
    assert len(hashes) == 3 and len({s.slot() for s in (plain, small, isolated)}) == 3
    assert "cpus" not in plain.identity()  # specs without settings keep their old hashes
    assert build_spec({"memory": "1G"}, where="t", base_dir=tmp_path) == build_spec(
        {"memory": 1024}, where="t", base_dir=tmp_path
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"cpus": 0}, "cpus=0: a whole number of CPUs, at least 1"),
        ({"cpus": "2"}, "a whole number of CPUs"),
        ({"cpus": True}, "a whole number of CPUs"),
        ({"memory": "lots"}, "memory='lots': a size in whole mebibytes"),
        ({"memory": "1.5G"}, "a size in whole mebibytes"),
        ({"disk": "100K"}, "disk='100K': a size in whole mebibytes or more, e.g. disk='64G'"),
        ({"isolated_from_mac": "yes"}, "not the same as isolation="),
    ],
)
def test_bad_machine_settings_name_the_test_and_the_fix(
    tmp_path: Path, values: dict[str, object], expected: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)) as info:
        build_spec(values, where="test_x: @pytest.mark.orbstack(...)", base_dir=tmp_path)
    assert str(info.value).startswith("test_x: ")
