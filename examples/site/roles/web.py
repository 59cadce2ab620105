"""The web role: nginx serving a page that names its backend, on ``host.data.port``; since
release 2 also ``/health`` (``examples/test_upgrade.py`` upgrades release 1 to this).

Self-contained (no template files), so it also runs on its own::

    pyinfra @orb/MACHINE roles/web.py -y
"""

from io import StringIO

from pyinfra import host
from pyinfra.operations import apt, files, systemd

PORT = int(host.data.get("port", 8080))

apt.packages(
    name="Install nginx",
    packages=["nginx"],
    update=True,
    cache_time=3600,
    no_recommends=True,
    _sudo=True,
)
files.link(
    name="No default site",
    path="/etc/nginx/sites-enabled/default",
    present=False,
    _sudo=True,
)
files.put(
    name="The page",
    src=StringIO(f"backend {host.data.orb_name}\n"),
    dest="/var/www/html/index.html",
    mode="644",
    _sudo=True,
)
site = files.put(
    name="The backend site",
    src=StringIO(
        f"server {{\n    listen {PORT};\n    root /var/www/html;\n"
        f"    location / {{ try_files $uri /index.html; }}\n"
        # release 2: a health check for the balancer and for monitoring
        "    location = /health { default_type text/plain; return 200 'ok\\n'; }\n}\n"
    ),
    dest="/etc/nginx/conf.d/backend.conf",
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
systemd.service(
    name="Reload nginx for the new site",
    service="nginx",
    reloaded=True,
    _if=site.did_change,
    _sudo=True,
)
