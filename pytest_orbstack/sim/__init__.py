"""orbsim: an ``orbctl``-compatible simulator backed by real isolated Linux machines.

Standalone: this package imports nothing else from ``pytest_orbstack`` (stdlib, ``filelock``
and ``psutil`` only).  Entry point: :func:`pytest_orbstack.sim.cli.main` (console script
``orbsim``).  The operation log helpers live in :mod:`pytest_orbstack.sim.oplog`.
"""

SIM_VERSION = "2.0.5"
SIM_BUILD = "19905"
