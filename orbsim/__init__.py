"""orbsim: an ``orbctl``-compatible simulator backed by real isolated Linux machines.

Standalone: this package imports nothing else from ``pytest_orbstack`` (stdlib, ``filelock``
and ``psutil`` only).  Entry point: :func:`orbsim.cli.main` (console script
``orbsim``).  The operation log helpers live in :mod:`orbsim.oplog`.
"""

SIM_VERSION = "2.0.5"
SIM_BUILD = "19905"
