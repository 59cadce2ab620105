"""The plugin's named vocabularies, as ``Literal`` types (mypy then catches a role passed where
an isolation level belongs, and a misspelt value)."""

from __future__ import annotations

from typing import Literal, TypeAlias, get_args

#: How widely a machine is shared (the ``isolation=`` of the marker and factories).
Isolation: TypeAlias = Literal["session", "module", "function"]
#: What a machine is for: the role it is made and recorded with (registry, report).
#:  ``function``/``module``/``factory``: fresh machines of tests; ``session``,
#:  ``reuse``: shared ones; ``base``, ``template``, ``replica``: clone origins; ``pool``: a
#:  machine prepared ahead and never claimed.
Role: TypeAlias = Literal[
    "function",
    "module",
    "factory",
    "session",
    "reuse",
    "base",
    "template",
    "replica",
    "pool",
]
ISOLATIONS: tuple[Isolation, ...] = get_args(Isolation)
ROLES: tuple[Role, ...] = get_args(Role)

__all__ = ["ISOLATIONS", "ROLES", "Isolation", "Role"]
