"""Distros, their releases and version numbers, as OrbStack 2.2's image index has them
(docs/orbctl-contract.md §5 and §16), and the machine name rules (§6).

**The one table to update when OrbStack's image index moves** is :data:`TABLE`: per CLI token,
the image name, cloud-init support, the variant, the releases offered (each with the version
number users may type instead, since 2.2.0: ``ubuntu:26.04`` is ``resolute``), the default
release, and releases the index no longer offers (created like an unknown version: ``make
rootfs: image not found: {ubuntu focal arm64 default}``, orbstack#2152).  Everything else here
is derived from it; ``orbsim`` reports the codename for a version-number request, as OrbStack
does (§16 [CAP]).

Sources (§16): Ubuntu ``resolute`` (26.04) default and ``questing`` [OBS]; focal (20.04) removed
[OBS #2152]; ``nixos:25.11``, ``opensuse:16.0``, ``fedora:43`` seen [OBS].  That those newest
releases are also their distros' defaults is inferred (OrbStack's default is the newest); the
Debian default stays ``bookworm`` (§16 is silent; §5 says bookworm).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Distro:
    """One distro of the image index.  ``releases`` maps each release offered (as
    ``image.version`` shows it) to the version number that names it too, or ``None``."""

    image: str
    default: str
    releases: dict[str, str | None]
    cloud_init: bool = True
    variant: str = "default"
    #: Releases (and their numbers) the index no longer offers.
    removed: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.default not in self.releases:
            raise ValueError(f"{self.image}: default {self.default!r} is not offered")


def _numbers(*versions: str) -> dict[str, str | None]:
    """Releases named by their number only (``image.version`` is the number)."""
    return dict.fromkeys(versions)


# CLI token -> distro.  Update here when OrbStack's image index changes (docs/simulator.md).
TABLE: dict[str, Distro] = {
    "alma": Distro("almalinux", "9", _numbers("8", "9", "10")),
    "alpine": Distro("alpine", "3.22", _numbers("3.19", "3.20", "3.21", "3.22", "edge")),
    "arch": Distro("archlinux", "current", _numbers("current"), cloud_init=False),
    "centos": Distro("centos", "9-Stream", _numbers("9-Stream", "10-Stream")),
    "debian": Distro(
        "debian",
        "bookworm",
        {"buster": "10", "bullseye": "11", "bookworm": "12", "trixie": "13", "forky": "14"},
    ),
    "devuan": Distro("devuan", "daedalus", {"chimaera": "4", "daedalus": "5"}),
    "fedora": Distro("fedora", "43", _numbers("40", "41", "42", "43")),
    "gentoo": Distro("gentoo", "current", _numbers("current"), cloud_init=False, variant="openrc"),
    "kali": Distro("kali", "current", _numbers("current")),
    "nixos": Distro("nixos", "25.11", _numbers("25.05", "25.11"), cloud_init=False),
    "openeuler": Distro("openeuler", "25.03", _numbers("20.03", "22.03", "24.03", "25.03")),
    "opensuse": Distro("opensuse", "16.0", _numbers("15.6", "16.0", "tumbleweed")),
    "oracle": Distro("oracle", "9", _numbers("8", "9")),
    "rocky": Distro("rockylinux", "9", _numbers("8", "9", "10")),
    "ubuntu": Distro(
        "ubuntu",
        "resolute",
        {
            "jammy": "22.04",
            "noble": "24.04",
            "oracular": "24.10",
            "plucky": "25.04",
            "questing": "25.10",
            "resolute": "26.04",
        },
        removed={"focal": "20.04"},
    ),
    "void": Distro("voidlinux", "current", _numbers("current"), cloud_init=False),
}

# -- derived from TABLE (nothing below is data) ------------------------------------------------

# CLI token -> (image distro, default version, cloud-init supported, variant)
DISTROS: dict[str, tuple[str, str, bool, str]] = {
    token: (d.image, d.default, d.cloud_init, d.variant) for token, d in TABLE.items()
}
# the image names are accepted as tokens too
_BY_IMAGE = {d.image: token for token, d in TABLE.items()}
#: image distro -> version number -> codename (offered and removed releases alike).
ALIASES: dict[str, dict[str, str]] = {
    d.image: {
        number: codename
        for codename, number in {**d.releases, **d.removed}.items()
        if number is not None and number != codename
    }
    for d in TABLE.values()
}
#: image distro -> the releases the simulated index offers (anything else: "image not found").
KNOWN_VERSIONS: dict[str, set[str]] = {d.image: set(d.releases) for d in TABLE.values()}

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-.]+$")
RESERVED = frozenset({"default", "vm", "host", "services", "gateway", "k8s", "docker"})


def valid_name(name: str) -> bool:
    return bool(NAME_RE.match(name)) and name not in RESERVED


def split_token(spec: str) -> tuple[str, str | None]:
    token, sep, version = spec.partition(":")
    return token, (version if sep else None)


def lookup(token: str) -> tuple[str, str, bool, str] | None:
    """Return (image distro, default version, cloud-init ok, variant) for a CLI token."""
    key = token.lower()
    if key in DISTROS:
        return DISTROS[key]
    if key in _BY_IMAGE:
        return DISTROS[_BY_IMAGE[key]]
    return None


def resolve_version(distro: str, version: str | None, latest: str) -> str:
    """The release ``image.version`` shows: the default, or the codename of a version number."""
    if not version:
        return latest
    return ALIASES.get(distro, {}).get(version, version)


def version_known(distro: str, version: str) -> bool:
    return version in KNOWN_VERSIONS.get(distro, set())


def native_arch() -> str:
    import os

    m = os.uname().machine.lower()  # what platform.machine() returns, without importing it
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(m, m)


def allowed_arches() -> list[str]:
    nat = native_arch()
    if nat == "arm64":
        return ["arm64", "amd64"]
    return ["amd64", "i386"]
