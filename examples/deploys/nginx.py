"""nginx serving one page, provisioned with pyinfra; checked by ``examples/test_nginx.py``.

Installs nginx from the distribution (``apt.packages``), writes the index page and makes sure
the service runs now and at boot (``systemd.service``).  Every operation is idempotent.  Run it
by hand with the connector::

    pyinfra @orb/MACHINE examples/deploys/nginx.py -y
"""

from io import StringIO

from pyinfra import host
from pyinfra.operations import apt, files, systemd

GREETING = str(host.data.get("greeting", "hello from pytest-orbstack"))

apt.packages(
    name="Install nginx",
    packages=["nginx"],
    update=True,
    cache_time=3600,
    no_recommends=True,
    _sudo=True,
)

files.put(
    name="Write the index page",
    src=StringIO(GREETING + "\n"),
    dest="/var/www/html/index.html",
    mode="644",
    _sudo=True,
)

systemd.service(
    name="Run nginx, now and at boot",
    service="nginx",
    running=True,
    enabled=True,
    _sudo=True,
)
