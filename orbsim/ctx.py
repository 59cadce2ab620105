"""Per-invocation context (tiny: on the CLI's hot path)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .faults import Decision


class Ctx:
    """Locations, the canonical command, its fault decision and the machines it touched."""

    def __init__(
        self,
        home: Path,
        cache: Path,
        prog: str = "orbctl",
        cmd: str = "",
        argv: list[str] | None = None,
    ) -> None:
        self.home = home
        self.cache = cache
        self.prog = prog
        self.cmd = cmd
        self.argv = list(argv or [])
        self.pid = os.getpid()  # the invocation's (a create server logs under its client's pid)
        self.decision: Decision | None = None  # drawn once, by decide()
        self.machines: list[str] = []
        self.logged = False
        self.error: str | None = None  # a server error the client did not print (operation log)
        #: set in a create/clone server: makes its client hang, returns once the client is gone
        self.on_hang: Callable[[], None] | None = None
        self._injected = False

    def touch(self, name: str) -> None:
        if name not in self.machines:
            self.machines.append(name)

    def decide(self, name: str | None = None) -> Decision:
        """This invocation's fault decision (drawn on first use, ``faults.decide``), for the
        machine it makes or starts: the first one touched (clone: the new one), else ``name``."""
        if self.decision is None:
            from . import faults

            machine = self.machines[0] if self.machines else name
            self.decision = faults.decide(self.home, self.cmd, machine)
        return self.decision

    @property
    def fault(self) -> str | None:
        """The op log's ``fault``: what was drawn, if anything (None before any draw)."""
        return self.decision.label if self.decision is not None else None

    def inject(self, name: str | None, image: dict[str, str] | None = None) -> None:
        """Apply this invocation's fault and latency (once per invocation): ``faults.apply``."""
        if self._injected:
            return
        self._injected = True
        from . import faults

        faults.apply(self, name, image)
