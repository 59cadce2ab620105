"""orbsim: an ``orbctl``-compatible simulator backed by real isolated Linux machines.

Standalone: this package imports nothing from ``pytest_orbstack``: the standard library, and
PyYAML for cloud-init user data (its file locks are its own, :mod:`orbsim.locks`).  Entry
point: :func:`orbsim.cli.main` (console script ``orbsim``).  The operation log helpers live in
:mod:`orbsim.oplog`.
"""

#: The OrbStack release orbsim follows (docs/orbctl-contract.md §16): ``version`` prints it as
#: 2.2.3 does (``Version: 2.2.3 (2020300)``, ``Commit: SHA (v2.2.3)``); the all-zero commit says
#: it is not OrbStack.
SIM_VERSION = "2.2.3"
SIM_BUILD = "2020300"
