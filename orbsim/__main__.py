"""``python -m orbsim`` is the same as the ``orbsim`` command."""

from orbsim.cli import main

raise SystemExit(main())
