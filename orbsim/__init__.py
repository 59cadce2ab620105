"""orbsim: an ``orbctl``-compatible simulator backed by real isolated Linux machines.

Standalone: this package imports nothing from ``pytest_orbstack``: the standard library, and
PyYAML for cloud-init user data (its file locks are its own, :mod:`orbsim.locks`).  Entry
point: :func:`orbsim.cli.main` (console script ``orbsim``).  The operation log helpers live in
:mod:`orbsim.oplog`.
"""

SIM_VERSION = "2.0.5"
SIM_BUILD = "19905"
