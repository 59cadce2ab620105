"""pytest-orbstack: real Linux machines from OrbStack as pytest fixtures.

The public API is re-exported here lazily (PEP 562), so importing the package - which the
``orbsim`` simulator and the pytest entry point both do - costs almost nothing until a name is
actually used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Machine": "pytest_orbstack.machine",
    "RunResult": "pytest_orbstack.machine",
    "CommandError": "pytest_orbstack.errors",
    "CopyError": "pytest_orbstack.errors",
    "MachineSpec": "pytest_orbstack.spec",
    "DeployResult": "pytest_orbstack.deploy.results",
    "OperationResult": "pytest_orbstack.deploy.results",
    "DeployError": "pytest_orbstack.errors",
    "IdempotenceError": "pytest_orbstack.errors",
    "ProvisionError": "pytest_orbstack.errors",
    "Orbctl": "pytest_orbstack.orbctl",
    "OrbstackError": "pytest_orbstack.errors",
    "ConfigError": "pytest_orbstack.errors",
    "OrbctlError": "pytest_orbstack.errors",
    "PermanentError": "pytest_orbstack.errors",
    "MachineNotFoundError": "pytest_orbstack.errors",
    "MachineExistsError": "pytest_orbstack.errors",
    "TransientError": "pytest_orbstack.errors",
    "StateError": "pytest_orbstack.errors",
    "OrbStackUnavailableError": "pytest_orbstack.errors",
    "OrbctlTimeoutError": "pytest_orbstack.errors",
    "WaitTimeoutError": "pytest_orbstack.errors",
    "UnitFailedError": "pytest_orbstack.errors",
    "ReportError": "pytest_orbstack.errors",
    "UnsupportedCommandError": "pytest_orbstack.errors",
    "UnsupportedSettingError": "pytest_orbstack.errors",
    "OrbStackWedgedError": "pytest_orbstack.errors",
    "OrbctlAbortedError": "pytest_orbstack.errors",
    "DeadlineExceeded": "pytest_orbstack.errors",
    "DeployProcessError": "pytest_orbstack.errors",
    "MissingTestinfraError": "pytest_orbstack.errors",
}

__all__ = [
    "CommandError",
    "ConfigError",
    "CopyError",
    "DeadlineExceeded",
    "DeployError",
    "DeployProcessError",
    "DeployResult",
    "IdempotenceError",
    "Machine",
    "MachineExistsError",
    "MachineNotFoundError",
    "MachineSpec",
    "MissingTestinfraError",
    "OperationResult",
    "OrbStackUnavailableError",
    "OrbStackWedgedError",
    "Orbctl",
    "OrbctlAbortedError",
    "OrbctlError",
    "OrbctlTimeoutError",
    "OrbstackError",
    "PermanentError",
    "ProvisionError",
    "ReportError",
    "RunResult",
    "StateError",
    "TransientError",
    "UnitFailedError",
    "UnsupportedCommandError",
    "UnsupportedSettingError",
    "WaitTimeoutError",
]

if TYPE_CHECKING:
    from pytest_orbstack.deploy.results import DeployResult, OperationResult
    from pytest_orbstack.errors import (
        CommandError,
        ConfigError,
        CopyError,
        DeadlineExceeded,
        DeployError,
        DeployProcessError,
        IdempotenceError,
        MachineExistsError,
        MachineNotFoundError,
        MissingTestinfraError,
        OrbctlAbortedError,
        OrbctlError,
        OrbctlTimeoutError,
        OrbstackError,
        OrbStackUnavailableError,
        OrbStackWedgedError,
        PermanentError,
        ProvisionError,
        ReportError,
        StateError,
        TransientError,
        UnitFailedError,
        UnsupportedCommandError,
        UnsupportedSettingError,
        WaitTimeoutError,
    )
    from pytest_orbstack.machine import Machine, RunResult
    from pytest_orbstack.orbctl import Orbctl
    from pytest_orbstack.spec import MachineSpec


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_orbstack' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
