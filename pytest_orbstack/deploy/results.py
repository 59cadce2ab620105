"""What a deploy did: ``OperationResult``, ``DeployResult``, and the errors that carry them.

Plain data, no pyinfra: results are built from the JSON the deploy process writes (see
:mod:`pytest_orbstack.deploy.pyinfra_driver`), so they can be made, compared and printed
anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_orbstack.errors import DeployError, IdempotenceError

#: Lines of stderr/stdout per failed operation shown in a DeployError message.
ERROR_TAIL_LINES = 20


@dataclass(frozen=True)
class OperationResult:
    """The outcome of one pyinfra operation on one machine.

    ``changed`` is pyinfra's own notion: the operation succeeded and executed at least one
    command.  ``executed`` is False for an operation that never ran (an earlier operation failed
    on this machine, or the deploy code raised); an operation skipped by its own condition
    (``_if``) *did* run: it succeeded without changing anything.  ``error`` is set when the
    operation raised instead of returning (a template that does not render, an
    ``OperationError``, a command generator that raises).  ``messages`` holds pyinfra's
    error/warning log lines for this operation (timeouts, upload errors, ...), which carry the
    reason when there is no command output.
    """

    name: str
    changed: bool
    success: bool
    stdout: str = ""
    stderr: str = ""
    commands: tuple[str, ...] = ()
    executed: bool = True
    ignored_error: bool = False
    messages: tuple[str, ...] = ()
    error: str | None = None

    @property
    def failed(self) -> bool:
        """The operation ran and failed, and the failure was not ignored (``_ignore_errors``)."""
        return self.executed and not self.success and not self.ignored_error

    def describe(self, tail: int = ERROR_TAIL_LINES) -> str:
        """A short human-readable report: name, then the error or the last lines of output."""
        detail = (
            self.error or self.stderr.strip() or self.stdout.strip() or "\n".join(self.messages)
        )
        lines = detail.splitlines()[-tail:] if detail else []
        body = "".join(f"\n      {line}" for line in lines)
        return f"{self.name}{body}"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OperationResult:
        return cls(
            name=str(data["name"]),
            changed=bool(data["changed"]),
            success=bool(data["success"]),
            stdout=str(data.get("stdout", "")),
            stderr=str(data.get("stderr", "")),
            commands=tuple(str(c) for c in data.get("commands", ())),
            executed=bool(data.get("executed", True)),
            ignored_error=bool(data.get("ignored_error", False)),
            messages=tuple(str(m) for m in data.get("messages", ())),
            error=None if data.get("error") is None else str(data["error"]),
        )


@dataclass(frozen=True)
class DeployResult:
    """The outcome of a deploy on one machine: its operations, in execution order."""

    machine: str
    operations: tuple[OperationResult, ...] = ()
    duration: float = 0.0
    #: A failure outside any operation: connect error, fact error, exception in deploy code.
    error: str | None = None
    target: str = ""

    @property
    def changed(self) -> bool:
        """Some operation changed something."""
        return any(op.changed for op in self.operations)

    @property
    def changed_operations(self) -> list[OperationResult]:
        return [op for op in self.operations if op.changed]

    @property
    def failed_operations(self) -> list[OperationResult]:
        return [op for op in self.operations if op.failed]

    @property
    def skipped_operations(self) -> list[OperationResult]:
        """Operations that never ran because the deploy stopped on this machine (not those an
        ``_if`` condition skipped: they ran, and changed nothing)."""
        return [op for op in self.operations if not op.executed]

    @property
    def ok(self) -> bool:
        """No error, no failed operation, and every operation ran."""
        return self.error is None and not self.failed_operations and not self.skipped_operations

    def operation(self, name: str) -> OperationResult:
        """The first operation whose name equals ``name`` (else contains it)."""
        for op in self.operations:
            if op.name == name:
                return op
        for op in self.operations:
            if name in op.name:
                return op
        raise KeyError(f"no operation named {name!r} in deploy of {self.machine!r}")

    def summary(self) -> str:
        state = "ok" if self.ok else "FAILED"
        changed = len(self.changed_operations)
        return (
            f"{self.machine}: {state}, {len(self.operations)} operations, {changed} changed "
            f"({self.duration:.1f}s)"
        )

    @classmethod
    def from_json(
        cls, machine: str, data: Mapping[str, Any], *, duration: float, target: str
    ) -> DeployResult:
        return cls(
            machine=machine,
            operations=tuple(OperationResult.from_json(op) for op in data.get("operations", ())),
            duration=duration,
            error=None if data.get("error") is None else str(data["error"]),
            target=target,
        )


__all__ = [
    "ERROR_TAIL_LINES",
    "DeployError",
    "DeployResult",
    "IdempotenceError",
    "OperationResult",
]
