"""A small, realistic pyinfra role: a service user, a package, a templated config, a script.

Run it against any OrbStack machine (``-y`` skips the confirmation)::

    pyinfra @orb/my-machine examples/deploys/webapp.py -y
    pyinfra @orb/my-machine examples/deploys/webapp.py -y --data webapp_port=9090

or from a test with ``orb_vm.deploy("deploys/webapp.py", webapp_port=9090)`` (see
``examples/test_webapp_role.py``).  Host data (all optional): ``webapp_user`` (default
``webapp``), ``webapp_port`` (``8080``), ``webapp_workers`` (``2``).

Every operation is idempotent: a second run changes nothing (``assert_idempotent``).  Local files
are located relative to this file (``__file__``), so the role works whatever the current
directory is.
"""

from pathlib import Path

from pyinfra import host
from pyinfra.operations import apt, files, server

HERE = Path(__file__).parent
USER = host.data.get("webapp_user", "webapp")
PORT = int(host.data.get("webapp_port", 8080))
WORKERS = int(host.data.get("webapp_workers", 2))

server.user(  # noqa: S604 - `shell` is the login shell, not a subprocess flag
    name="Create the webapp service user",
    user=USER,
    home=f"/home/{USER}",
    shell="/bin/sh",
    create_home=True,
    _sudo=True,
)

apt.packages(
    name="Install jq",
    packages=["jq"],
    update=True,
    cache_time=24 * 3600,  # refresh the index at most daily: keeps the role idempotent
    _sudo=True,
)

files.directory(
    name="Create /etc/webapp",
    path="/etc/webapp",
    user="root",
    group=USER,
    mode="750",
    _sudo=True,
)

files.template(
    name="Write /etc/webapp/webapp.conf",
    src=str(HERE / "templates" / "webapp.conf.j2"),
    dest="/etc/webapp/webapp.conf",
    user="root",
    group=USER,
    mode="640",
    webapp_user=USER,
    port=PORT,
    workers=WORKERS,
    _sudo=True,
)

files.put(
    name="Install the webapp-status script",
    src=str(HERE / "files" / "webapp-status"),
    dest="/usr/local/bin/webapp-status",
    user="root",
    group="root",
    mode="755",
    _sudo=True,
)

files.line(
    name="Let the service user read its config without a password prompt",
    path=f"/home/{USER}/.profile",
    line="export WEBAPP_CONFIG=/etc/webapp/webapp.conf",
    _sudo=True,
    _sudo_user=USER,
)
