"""``MachineSpec``: what machine a test needs, validated, hashed and named.

A spec is built from the ``@pytest.mark.orbstack(...)`` marker (or factory keyword arguments)
over the configured defaults.  Bad input raises :class:`~pytest_orbstack.errors.ConfigError`
with a message naming the place it came from and how to fix it.  Nothing here runs ``orbctl``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_orbstack.errors import ConfigError
from pytest_orbstack.orbctl import CreateOptions
from pytest_orbstack.vocabulary import ISOLATIONS, Isolation

#: The marker's (and the factory's) keyword arguments, with what their defaults mean: the one
#: list the marker's validation and its ``--markers`` help are made from.
MARKER_ARGS: dict[str, str] = {
    "image": "'debian'",
    "isolation": "'session|module|function'",
    "arch": "None",
    "user": "None",
    "user_data": "None",
    "deploy": "None",
    "deploy_data": "None",
    "deploy_config": "None",
    "deploy_from": "None",
    "name": "None",
    "cpus": "None",
    "memory": "None (e.g. '4G', '512M' or MiB)",
    "disk": "None (e.g. '64G')",
    "isolated_from_mac": "False",
    "inventory": "None",
    "group_data": "None",
}
MARKER_KEYS = tuple(MARKER_ARGS)
#: CLI distro tokens OrbStack accepts (docs/orbctl-contract.md §5).
DISTROS = (
    "alma", "alpine", "arch", "centos", "debian", "devuan", "fedora", "gentoo", "kali",
    "nixos", "openeuler", "opensuse", "oracle", "rocky", "ubuntu", "void",
)  # fmt: skip
#: Architectures, with the spellings users type mapped to OrbStack's.
ARCHES = {"amd64": "amd64", "x86_64": "amd64", "arm64": "arm64", "aarch64": "arm64",
          "i386": "i386", "386": "i386"}  # fmt: skip
RESERVED_NAMES = frozenset({"default", "vm", "host", "services", "gateway", "k8s", "docker"})
#: Every machine this plugin names starts with this prefix (ownership is still proven by the
#: registry, never by the prefix alone).
PREFIX = "orbpt"
#: No release: the distro's default, whatever OrbStack's image index says it is this month
#: (docs/orbctl-contract.md §16: releases come and go without an OrbStack release).
DEFAULT_IMAGE = "debian"

_IMAGE = re.compile(r"^(?P<distro>[a-z]+)(?::(?P<version>[A-Za-z0-9][A-Za-z0-9._-]*))?$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]+$")
MAX_NAME = 63  # the name is a hostname label


@dataclass(frozen=True)
class MachineSpec:
    """A validated description of a machine.  Paths are absolute."""

    image: str = DEFAULT_IMAGE
    isolation: Isolation = "session"
    arch: str | None = None
    user: str | None = None
    user_data: str | None = None
    deploy: str | None = None
    name: str | None = None
    #: The deploy's host data and pyinfra config, as canonical JSON (hashable; see below).
    deploy_data_json: str | None = None
    deploy_config_json: str | None = None
    #: ``deploy_from=``: the git revision ``deploy`` was taken from (``deploy`` is then the
    #: extracted file, whose path names the revision's tree: part of the identity already).
    deploy_from: str | None = None
    #: OrbStack 2.2's per-machine settings (docs/orbctl-contract.md §16): CPU and memory limits,
    #: disk size limit, and a machine isolated from the Mac (``--isolated``).
    cpus: int | None = None
    memory_mib: int | None = None
    disk_bytes: int | None = None
    isolated_from_mac: bool = False

    @property
    def deploy_data(self) -> dict[str, Any]:
        return dict(json.loads(self.deploy_data_json)) if self.deploy_data_json else {}

    @property
    def deploy_config(self) -> dict[str, Any]:
        return dict(json.loads(self.deploy_config_json)) if self.deploy_config_json else {}

    def identity(self) -> dict[str, Any]:
        """What makes two machines interchangeable, without file contents."""
        identity = {
            "image": self.image,
            "arch": self.arch,
            "user": self.user,
            "user_data": self.user_data,
            "deploy": self.deploy,
        }
        # Only when given, so that specs without them keep the hashes they always had.
        if self.deploy_data_json:
            identity["deploy_data"] = self.deploy_data_json
        if self.deploy_config_json:
            identity["deploy_config"] = self.deploy_config_json
        identity.update(self.settings())
        return identity

    def settings(self) -> dict[str, Any]:
        """The per-machine settings given (part of the identity and of the base)."""
        given = {
            "cpus": self.cpus,
            "memory_mib": self.memory_mib,
            "disk_bytes": self.disk_bytes,
            "isolated_from_mac": self.isolated_from_mac or None,
        }
        return {k: v for k, v in given.items() if v is not None}

    def base_hash(self) -> str:
        """Hash of the machine as ``create`` makes it (image, arch, user, user-data content)."""
        data = {**self.identity(), "deploy": None, "user_data": _file_digest(self.user_data)}
        data.pop("deploy_data", None)
        data.pop("deploy_config", None)
        return _digest(data)

    def content_hash(self, deploy_fingerprint: str | None = None) -> str:
        """Hash of the provisioned machine: base plus the deploy's fingerprint."""
        data = {"base": self.base_hash(), "deploy": self.deploy, "deploy_fp": deploy_fingerprint}
        return _digest(data)

    def slot(self) -> str:
        """Stable key of this spec's identity (not its contents): finds stale reused machines."""
        return _digest(self.identity())[:10]

    def pristine(self) -> MachineSpec:
        """The spec of this machine's base: what ``create`` makes, before any deploy."""
        return MachineSpec(
            image=self.image,
            arch=self.arch,
            user=self.user,
            user_data=self.user_data,
            cpus=self.cpus,
            memory_mib=self.memory_mib,
            disk_bytes=self.disk_bytes,
            isolated_from_mac=self.isolated_from_mac,
        )

    def create_options(self) -> CreateOptions:
        """The ``orbctl create`` flags this spec needs."""
        return CreateOptions(
            arch=self.arch,
            user=self.user,
            user_data=self.user_data,
            cpus=self.cpus,
            memory_mib=self.memory_mib,
            disk_bytes=self.disk_bytes,
            isolated=self.isolated_from_mac,
        )

    def describe(self) -> str:
        parts = [self.image]
        if self.arch:
            parts.append(f"arch={self.arch}")
        if self.user:
            parts.append(f"user={self.user}")
        if self.deploy:
            at = f"@{self.deploy_from}" if self.deploy_from else ""
            parts.append(f"deploy={Path(self.deploy).name}{at}")
        parts += [f"{k}={v}" for k, v in self.settings().items()]
        return " ".join(parts)


#: CLI distro tokens whose ``/etc/os-release`` ``ID`` is another word.
OS_RELEASE_IDS = {"alma": "almalinux", "oracle": "ol", "openeuler": "openEuler"}


def image_matches(image: str, os_id: str, versions: Sequence[str]) -> bool:
    """Whether a machine whose ``/etc/os-release`` says ``os_id`` and ``versions`` (its
    codename and version id) is the ``image`` asked for.  Lenient where names legitimately
    differ (a version given as a number or as a codename, ``3.20`` for ``3.20.1``, openSUSE's
    several IDs); a machine that says nothing matches."""
    if not os_id or os_id == "unknown":
        return True
    distro, _, wanted = image.partition(":")
    expected = OS_RELEASE_IDS.get(distro, distro)
    if not os_id.startswith(expected):
        return False
    if not wanted or not versions or wanted in ("latest", "current"):
        return True
    return any(v == wanted or v.startswith(f"{wanted}.") for v in versions)


def kwargs_text(values: Mapping[str, Any]) -> str:
    """``image='x', isolation='function'``: marker or factory arguments as the user wrote them,
    for error messages."""
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


def marker_signature() -> str:
    """``orbstack(image='debian', isolation=..., ...)`` for ``pytest --markers``."""
    return "orbstack(" + ", ".join(f"{k}={v}" for k, v in MARKER_ARGS.items()) + ")"


def _digest(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _file_digest(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def build_spec(
    values: Mapping[str, Any],
    *,
    where: str,
    base_dir: Path,
    default_image: str = DEFAULT_IMAGE,
) -> MachineSpec:
    """Validate marker / factory keyword arguments into a :class:`MachineSpec`.

    ``where`` names the origin for error messages (``test_web: @pytest.mark.orbstack(...)``);
    relative paths are resolved against ``base_dir`` (the test file's directory).
    """
    unknown = sorted(set(values) - set(MARKER_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown argument(s) {', '.join(unknown)}; accepted: {', '.join(MARKER_KEYS)}"
        )
    if "inventory" in values or "group_data" in values:
        raise ConfigError(
            f"{where}: inventory=/group_data= describe a topology, which the orb_inventory "
            f"fixture gives (not orb_vm or a factory); use orb_inventory, or drop them"
        )
    image = values.get("image") or default_image
    isolation = values.get("isolation", "session")
    spec = MachineSpec(
        image=validate_image(image, where),
        isolation=_validate_isolation(isolation, where),
        arch=_validate_arch(values.get("arch"), where),
        user=_validate_user(values.get("user"), where),
        user_data=_validate_path(values.get("user_data"), "user_data", where, base_dir),
        deploy=_validate_path(values.get("deploy"), "deploy", where, base_dir),
        name=_validate_name(values.get("name"), where),
        deploy_data_json=_validate_deploy_option(values, "deploy_data", where),
        deploy_config_json=_validate_deploy_option(values, "deploy_config", where),
        cpus=_validate_cpus(values.get("cpus"), where),
        memory_mib=_validate_size(values.get("memory"), "memory", where, mib=True),
        disk_bytes=_validate_size(values.get("disk"), "disk", where, mib=False),
        isolated_from_mac=_validate_flag(values.get("isolated_from_mac"), where),
    )
    if values.get("deploy_from") is not None:
        if not spec.deploy:
            raise ConfigError(
                f"{where}: deploy_from= names the revision of the marker's deploy=; add deploy="
            )
        from pytest_orbstack.deploy.revisions import deploy_at_revision

        rev = values["deploy_from"]
        old = deploy_at_revision(spec.deploy, rev, where)
        spec = dataclasses.replace(spec, deploy=old, deploy_from=str(rev))
    if spec.name and spec.isolation != "session":
        raise ConfigError(
            f"{where}: name={spec.name!r} needs isolation='session' (a fixed name cannot be "
            f"given to one machine per test or module); drop name= or the isolation"
        )
    return spec


def validate_image(image: object, where: str) -> str:
    if not isinstance(image, str) or not _IMAGE.match(image):
        raise ConfigError(
            f"{where}: image={image!r} is not an image string; use DISTRO or DISTRO:VERSION, "
            f"e.g. 'debian:bookworm' or 'ubuntu:24.04'"
        )
    distro = image.split(":", 1)[0]
    if distro not in DISTROS:
        raise ConfigError(
            f"{where}: image={image!r}: unknown distro {distro!r}; OrbStack offers "
            f"{', '.join(DISTROS)}"
        )
    return image


def _validate_isolation(value: object, where: str) -> Isolation:
    for isolation in ISOLATIONS:
        if value == isolation:
            return isolation
    raise ConfigError(
        f"{where}: isolation={value!r}: isolation must be one of {', '.join(ISOLATIONS)}"
    )


def _validate_arch(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in ARCHES:
        raise ConfigError(
            f"{where}: arch={value!r}: architecture must be one of amd64, arm64, i386 "
            f"(or omit it for the host's native architecture)"
        )
    return ARCHES[value.lower()]


def _validate_user(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _USER.match(value) or value == "root":
        raise ConfigError(
            f"{where}: user={value!r}: the default user must be a lower-case Linux user name "
            f"(letters, digits, '_' and '-', not root)"
        )
    return value


def _validate_path(value: object, key: str, where: str, base_dir: Path) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, Path)) or not str(value):
        raise ConfigError(f"{where}: {key}={value!r} must be a path to a file")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        raise ConfigError(
            f"{where}: {key}={str(value)!r}: no such file ({path}); paths are relative to the "
            f"test file's directory"
        )
    return str(path.resolve())


def _validate_deploy_option(values: Mapping[str, Any], key: str, where: str) -> str | None:
    """``deploy_data``/``deploy_config``: a dict for the marker's ``deploy=``, checked as a
    deploy call checks it; canonical JSON (part of the template hash)."""
    value = values.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: {key}={value!r} must be a dict")
    if not values.get("deploy"):
        raise ConfigError(
            f"{where}: {key}= applies to the marker's deploy=; add deploy= or drop {key}="
        )
    from pytest_orbstack.deploy.runner import deploy_options

    if key == "deploy_data":
        deploy_options(value, None, where=where)
    else:
        deploy_options(None, value, where=where)
    return json.dumps(dict(value), sort_keys=True) if value else None


_SIZE = re.compile(r"^(\d+)\s*([KMGT])(?:i?B)?$", re.IGNORECASE)
_UNIT = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def _validate_cpus(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{where}: cpus={value!r}: a whole number of CPUs, at least 1 (e.g. cpus=2)"
        )
    return value


def _validate_size(value: object, key: str, where: str, *, mib: bool) -> int | None:
    """``memory=``/``disk=``: ``'4G'``, ``'512M'`` (K/M/G/T, powers of 1024) or an int - MiB
    for memory, bytes for disk.  Returns MiB (memory) or bytes (disk), whole MiB either way."""
    if value is None:
        return None
    example = "memory='4G' or memory=4096 (MiB)" if mib else "disk='64G'"
    size: int | None = None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        size = value * 1024**2 if mib else value
    elif isinstance(value, str) and _SIZE.match(value.strip()):
        m = _SIZE.match(value.strip())
        assert m is not None
        size = int(m.group(1)) * _UNIT[m.group(2).upper()]
    if not size or size % 1024**2:
        raise ConfigError(
            f"{where}: {key}={value!r}: a size in whole mebibytes or more, e.g. {example}"
        )
    return size // 1024**2 if mib else size


def _validate_flag(value: object, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ConfigError(
            f"{where}: isolated_from_mac={value!r} must be True or False (True: a machine "
            f"OrbStack isolates from the Mac; not the same as isolation=, the machine's scope)"
        )
    return value


def _validate_name(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _NAME.match(value) or len(value) > 40:
        raise ConfigError(
            f"{where}: name={value!r}: a machine name is 2-40 characters of a-z, 0-9 and '-', "
            f"starting with a letter or digit"
        )
    if value in RESERVED_NAMES:
        raise ConfigError(f"{where}: name={value!r} is reserved by OrbStack; choose another")
    return value


def new_run_id() -> str:
    """A short random id, unique across concurrent pytest runs."""
    return secrets.token_hex(3)


def slugify(text: str, limit: int = 20) -> str:
    """A test id as a name fragment: lower-case ``[a-z0-9-]``, no leading/trailing ``-``."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].strip("-") or "t"


def machine_name(*parts: str) -> str:
    """Join parts into a valid OrbStack machine name under :data:`PREFIX`."""
    name = "-".join([PREFIX, *(slugify(p, 24) for p in parts if p)])
    name = re.sub(r"-+", "-", name)[:MAX_NAME].strip("-")
    if not _NAME.match(name):  # pragma: no cover - slugify guarantees it
        raise ValueError(f"generated an invalid machine name {name!r}")
    return name


__all__ = [
    "ARCHES",
    "DEFAULT_IMAGE",
    "DISTROS",
    "ISOLATIONS",
    "MARKER_KEYS",
    "PREFIX",
    "MachineSpec",
    "build_spec",
    "machine_name",
    "new_run_id",
    "slugify",
    "validate_image",
]
