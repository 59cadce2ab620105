"""The run's resolved settings and identity: plain values, no machinery.

:class:`Settings` is what :mod:`pytest_orbstack.options` resolves from the command line, ini
keys and the environment; :class:`RunContext` says who this process is in the run (run id,
xdist worker, owner process, shared directory).  Both are frozen and cheap to build, so the
policy functions in :mod:`pytest_orbstack.policy` and their unit tests need nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from pytest_orbstack.coordination import SharedDir
    from pytest_orbstack.registry import Owner

#: ``--orbstack-keep``: modelled on pytest's ``tmp_path_retention_policy``.
KeepPolicy = Literal["never", "on-failure", "always"]
KEEP_POLICIES: tuple[KeepPolicy, ...] = get_args(KeepPolicy)
#: ``--orbstack-backend``.
Backend = Literal["auto", "orbctl", "sim"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)


@dataclass(frozen=True)
class Settings:
    """Resolved configuration; :func:`pytest_orbstack.options.settings_from_config` says where
    each value came from."""

    executable: str
    backend: Backend = "orbctl"
    default_image: str = "debian"  # spec.DEFAULT_IMAGE: no release hard-coded
    keep: KeepPolicy = "never"
    reuse: bool = False
    timeout: float | None = None
    retries: int = 4
    max_creates: int = 0
    #: Fresh machines prepared ahead per spec and worker (0 = none, ``None`` = sized
    #: automatically from measured preparation and test times).
    pool_size: int | None = 0
    report_path: Path | None = None
    #: Start a stopped OrbStack (``orbctl start``) instead of skipping (``--orbstack-no-start``).
    start_orbstack: bool = True
    timeline_path: Path | None = None  # --orbstack-timeline: the HTML picture of the run
    state_dir: Path = Path(".")
    registry_key: str = ""


@dataclass(frozen=True)
class RunContext:
    """Who we are in this run: run id, xdist worker id, owner process, shared directory."""

    run_id: str
    worker: str  # "gw0", ... or "main"
    owner: Owner
    shared: SharedDir

    @property
    def is_worker(self) -> bool:
        return self.worker != "main"


__all__ = ["BACKENDS", "KEEP_POLICIES", "Backend", "KeepPolicy", "RunContext", "Settings"]
