"""Run pyinfra deploys against OrbStack machines.

One job per module:

* :mod:`~pytest_orbstack.deploy.results` - ``DeployResult``, ``OperationResult``,
  ``DeployError``, ``IdempotenceError`` (plain data);
* :mod:`~pytest_orbstack.deploy.targets` - deploy targets and the one path rule;
* :mod:`~pytest_orbstack.deploy.runner` - ``run_deploy``/``assert_idempotent``: a deploy
  process per deploy file, results back as JSON;
* :mod:`~pytest_orbstack.deploy.pyinfra_driver` - the only module that uses pyinfra's API;
* :mod:`~pytest_orbstack.deploy.fingerprint` - ``deploy_fingerprint`` for template cache keys.

Names are re-exported here lazily (PEP 562): ``python -m pytest_orbstack.deploy`` (the deploy
process) must import nothing before gevent's monkey-patching.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DeployError": "results",
    "DeployResult": "results",
    "IdempotenceError": "results",
    "OperationResult": "results",
    "DeployTarget": "targets",
    "describe_target": "targets",
    "DeployMachine": "runner",
    "DeployProcessError": "runner",
    "assert_idempotent": "runner",
    "run_deploy": "runner",
    "deploy_fingerprint": "fingerprint",
}

__all__ = [
    "DeployError",
    "DeployMachine",
    "DeployProcessError",
    "DeployResult",
    "DeployTarget",
    "IdempotenceError",
    "OperationResult",
    "assert_idempotent",
    "deploy_fingerprint",
    "describe_target",
    "run_deploy",
]

if TYPE_CHECKING:
    from pytest_orbstack.deploy.fingerprint import deploy_fingerprint
    from pytest_orbstack.deploy.results import (
        DeployError,
        DeployResult,
        IdempotenceError,
        OperationResult,
    )
    from pytest_orbstack.deploy.runner import (
        DeployMachine,
        DeployProcessError,
        assert_idempotent,
        run_deploy,
    )
    from pytest_orbstack.deploy.targets import DeployTarget, describe_target


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_orbstack.deploy' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pytest_orbstack.deploy.{module}"), name)
    globals()[name] = value
    return value
