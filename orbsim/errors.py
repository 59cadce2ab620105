"""Error types of the simulator (kept tiny: imported by the CLI's fast path)."""

from __future__ import annotations


class SimError(Exception):
    """A server (RPC) error: printed as ``[-32098] <msg>`` on stderr, exit 1."""

    def __init__(self, msg: str, detail: str | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.detail = detail


class ClientError(Exception):
    """A client-side (cobra) error: printed as ``Error: <msg>`` plus usage, exit 1."""

    def __init__(self, msg: str, usage: bool = True) -> None:
        super().__init__(msg)
        self.msg = msg
        self.usage = usage


class HostUnsupported(Exception):
    """The simulator cannot run machines on this host (reason in the message)."""
