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
    "CommandError": "pytest_orbstack.machine",
    "CopyError": "pytest_orbstack.machine",
    "MachineSpec": "pytest_orbstack.spec",
    "DeployResult": "pytest_orbstack.deploy.results",
    "OperationResult": "pytest_orbstack.deploy.results",
    "DeployError": "pytest_orbstack.deploy.results",
    "IdempotenceError": "pytest_orbstack.deploy.results",
    "ProvisionError": "pytest_orbstack.lifecycle",
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
}

__all__ = [
    "CommandError",
    "ConfigError",
    "CopyError",
    "DeployError",
    "DeployResult",
    "IdempotenceError",
    "Machine",
    "MachineExistsError",
    "MachineNotFoundError",
    "MachineSpec",
    "OperationResult",
    "OrbStackUnavailableError",
    "Orbctl",
    "OrbctlError",
    "OrbctlTimeoutError",
    "OrbstackError",
    "PermanentError",
    "ProvisionError",
    "RunResult",
    "StateError",
    "TransientError",
    "UnitFailedError",
    "WaitTimeoutError",
]

if TYPE_CHECKING:
    from pytest_orbstack.deploy.results import (
        DeployError,
        DeployResult,
        IdempotenceError,
        OperationResult,
    )
    from pytest_orbstack.errors import (
        ConfigError,
        MachineExistsError,
        MachineNotFoundError,
        OrbctlError,
        OrbctlTimeoutError,
        OrbstackError,
        OrbStackUnavailableError,
        PermanentError,
        StateError,
        TransientError,
        UnitFailedError,
        WaitTimeoutError,
    )
    from pytest_orbstack.lifecycle import ProvisionError
    from pytest_orbstack.machine import CommandError, CopyError, Machine, RunResult
    from pytest_orbstack.orbctl import Orbctl
    from pytest_orbstack.spec import MachineSpec


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_orbstack' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
