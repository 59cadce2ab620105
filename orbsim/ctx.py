"""Per-invocation context and the fault decision type (tiny: on the CLI's hot path)."""

from __future__ import annotations

from pathlib import Path


class Decision:
    """What fault injection decided for this invocation."""

    __slots__ = ("detail", "kind", "n")

    def __init__(self, kind: str | None = None, detail: str | None = None, n: int = -1) -> None:
        self.kind = kind  # None | "hang" | "detach" | "fail" | "permanent"
        self.detail = detail  # failure kind ("network", "ip", ...) or permanent kind
        self.n = n

    @property
    def label(self) -> str | None:
        if self.kind is None:
            return None
        return f"{self.kind}:{self.detail}" if self.detail else self.kind


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
