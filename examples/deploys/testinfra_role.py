"""A small "ops" role, provisioned with pyinfra and checked by ``examples/test_testinfra_role.py``.

It installs two packages, creates an ``ops`` group and a ``deployer`` user in it, an application
directory only ``deployer`` and ``ops`` can enter, a root-owned configuration readable by ``ops``
only, and a status script anyone may run (it succeeds only for users who can read the config).

Every operation is idempotent: a second run changes nothing.  Run it by hand with the connector::

    pyinfra @orb/MACHINE examples/deploys/testinfra_role.py -y
"""

from io import StringIO

from pyinfra.operations import apt, files, server

APP_DIR = "/srv/app"
CONFIG = '{"env": "test", "workers": 2}\n'
STATUS_SCRIPT = """\
#!/bin/sh
# Print the application's environment from its configuration (fails if it cannot be read).
set -eu
env=$(jq -r .env /srv/app/config.json)
workers=$(jq -r .workers /srv/app/config.json)
printf 'env=%s workers=%s\\n' "$env" "$workers"
"""

apt.packages(
    name="Install the role's packages",
    packages=["jq", "tree"],
    update=True,
    cache_time=3600,
    no_recommends=True,
    _sudo=True,
)

server.group(name="Create the ops group", group="ops", _sudo=True)

server.user(  # noqa: S604 - shell= is the login shell, not a subprocess flag
    name="Create the deployer user",
    user="deployer",
    shell="/bin/bash",
    groups=["ops"],
    create_home=True,
    _sudo=True,
)

files.directory(
    name="Create the application directory",
    path=APP_DIR,
    user="deployer",
    group="ops",
    mode="750",
    _sudo=True,
)

files.put(
    name="Write the application configuration",
    src=StringIO(CONFIG),
    dest=f"{APP_DIR}/config.json",
    user="root",
    group="ops",
    mode="640",
    _sudo=True,
)

files.put(
    name="Install the status script",
    src=StringIO(STATUS_SCRIPT),
    dest="/usr/local/bin/app-status",
    user="root",
    group="root",
    mode="755",
    _sudo=True,
)
