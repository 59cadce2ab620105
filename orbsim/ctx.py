"""Per-invocation context (tiny: on the CLI's hot path)."""

from __future__ import annotations

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
        self.decision = Decision()
        self.machines: list[str] = []
        self.logged = False
        self.error: str | None = None  # a server error the client did not print (operation log)
        self._injected = False

    def touch(self, name: str) -> None:
        if name not in self.machines:
            self.machines.append(name)

    def inject(self, name: str | None) -> None:
        """Apply this invocation's latency and injected failure (once per invocation)."""
        if self._injected:
            return
        self._injected = True
        from . import faults
        from .errors import SimError

        faults.sleep_latency(self.cmd)
        d = self.decision
        if d.kind == "fail":
            raise SimError(faults.fail_message(self.cmd, d.detail or "busy", name))
