"""``python -m pytest_orbstack.sim`` is the same as the ``orbsim`` command."""

from pytest_orbstack.sim.cli import main

raise SystemExit(main())
