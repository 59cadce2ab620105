"""Shared by the truth-table deploys: an operation that leaves a marker file in the machine.

Every step writes ``MARKER_DIR/NAME`` (``MARKER_DIR`` is host data ``marker_dir``), so the test
reads from the machine which operations really ran.
"""

import shlex

from pyinfra import host
from pyinfra.operations import server


def step(name, **kwargs):
    directory = shlex.quote(host.data.marker_dir)
    server.shell(
        name=f"step {name}",
        commands=[f"mkdir -p {directory} && touch {directory}/{shlex.quote(name)}"],
        **kwargs,
    )


def fail(name):
    server.shell(name=f"step {name}", commands=[f"echo 'step {name} fails' >&2; exit 3"])
