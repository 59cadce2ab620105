"""Distro tokens, image names and version aliases (docs/orbctl-contract.md §5) and name rules
(§6)."""

from __future__ import annotations

import re

# CLI token -> (image distro, latest version, cloud-init supported, variant)
DISTROS: dict[str, tuple[str, str, bool, str]] = {
    "alma": ("almalinux", "9", True, "default"),
    "alpine": ("alpine", "3.22", True, "default"),
    "arch": ("archlinux", "current", False, "default"),
    "centos": ("centos", "9-Stream", True, "default"),
    "debian": ("debian", "bookworm", True, "default"),
    "devuan": ("devuan", "daedalus", True, "default"),
    "fedora": ("fedora", "42", True, "default"),
    "gentoo": ("gentoo", "current", False, "openrc"),
    "kali": ("kali", "current", True, "default"),
    "nixos": ("nixos", "25.05", False, "default"),
    "openeuler": ("openeuler", "25.03", True, "default"),
    "opensuse": ("opensuse", "15.6", True, "default"),
    "oracle": ("oracle", "9", True, "default"),
    "rocky": ("rockylinux", "9", True, "default"),
    "ubuntu": ("ubuntu", "plucky", True, "default"),
    "void": ("voidlinux", "current", False, "default"),
}
# the image names are accepted as tokens too
_BY_IMAGE = {v[0]: k for k, v in DISTROS.items()}

ALIASES: dict[str, dict[str, str]] = {
    "debian": {"10": "buster", "11": "bullseye", "12": "bookworm", "13": "trixie", "14": "forky"},
    "devuan": {"4": "chimaera", "5": "daedalus"},
    "ubuntu": {
        "20.04": "focal",
        "22.04": "jammy",
        "24.04": "noble",
        "24.10": "oracular",
        "25.04": "plucky",
    },
}

# versions the simulated image index knows (anything else: "image not found")
KNOWN_VERSIONS: dict[str, set[str]] = {
    "almalinux": {"8", "9", "10"},
    "alpine": {"3.19", "3.20", "3.21", "3.22", "edge"},
    "archlinux": {"current"},
    "centos": {"9-Stream", "10-Stream"},
    "debian": {"buster", "bullseye", "bookworm", "trixie", "forky"},
    "devuan": {"chimaera", "daedalus"},
    "fedora": {"40", "41", "42"},
    "gentoo": {"current"},
    "kali": {"current"},
    "nixos": {"24.11", "25.05"},
    "openeuler": {"20.03", "22.03", "24.03", "25.03"},
    "opensuse": {"15.5", "15.6", "tumbleweed"},
    "oracle": {"8", "9"},
    "rockylinux": {"8", "9", "10"},
    "ubuntu": {"focal", "jammy", "noble", "oracular", "plucky"},
    "voidlinux": {"current"},
}

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-.]+$")
RESERVED = frozenset({"default", "vm", "host", "services", "gateway", "k8s", "docker"})


def valid_name(name: str) -> bool:
    return bool(NAME_RE.match(name)) and name not in RESERVED


def split_token(spec: str) -> tuple[str, str | None]:
    token, sep, version = spec.partition(":")
    return token, (version if sep else None)


def lookup(token: str) -> tuple[str, str, bool, str] | None:
    """Return (image distro, latest version, cloud-init ok, variant) for a CLI token."""
    key = token.lower()
    if key in DISTROS:
        return DISTROS[key]
    if key in _BY_IMAGE:
        return DISTROS[_BY_IMAGE[key]]
    return None


def resolve_version(distro: str, version: str | None, latest: str) -> str:
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
