"""The deploy process: ``python -m pytest_orbstack.deploy REQUEST.json`` (see ``pyinfra_driver``).

``pyinfra_cli`` is imported before anything else, as the ``pyinfra`` command does: it
monkey-patches this process with gevent, which must happen before the rest is imported.  This
module only ever runs in that separate process, never in a test process.
"""

import pyinfra_cli  # type: ignore[import-untyped]  # noqa: F401, I001 - gevent patching first

import sys

from pyinfra_cli.inventory import make_inventory  # type: ignore[import-untyped]
from pyinfra_cli.util import exec_file  # type: ignore[import-untyped]

from pytest_orbstack.deploy.pyinfra_driver import main

sys.exit(main(exec_file, make_inventory=make_inventory))
