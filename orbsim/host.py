"""Can this host run machines: the check every command that needs LXC makes first (``orbsim
doctor`` says more)."""

from __future__ import annotations

import os
import sys

from . import lxc, rootfs
from . import state as S
from .errors import HostUnsupported

HOST_TOOLS = ("lxc-start", "lxc-attach", "lxc-stop", "lxc-info", "nft", "dnsmasq", "ip", "tar")


def _on_path(tool: str) -> bool:
    """``shutil.which(tool) is not None`` without importing shutil (on every start's path)."""
    for d in (os.environ.get("PATH") or os.defpath).split(os.pathsep):
        p = os.path.join(d or ".", tool)
        if os.access(p, os.X_OK) and not os.path.isdir(p):
            return True
    return False


def host_problem() -> str | None:
    """Why machines cannot run here, or None (``orbsim doctor`` says more)."""
    if not sys.platform.startswith("linux"):
        return f"orbsim needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "orbsim needs root (LXC privileged containers); run `orbsim doctor`"
    for tool in HOST_TOOLS:
        if not _on_path(tool):
            return (
                f"{tool} is not installed (apt-get install --no-install-recommends lxc); "
                "run `orbsim doctor`"
            )
    if not os.path.exists(lxc.COMMON_CONF):
        return f"{lxc.COMMON_CONF} is missing (reinstall lxc); run `orbsim doctor`"
    if not rootfs.base_available(S.cache_home()) and not _on_path("debootstrap"):
        return "debootstrap is not installed and no base root filesystem is cached"
    return None


def require_host() -> None:
    problem = host_problem()
    if problem:
        raise HostUnsupported(problem)
