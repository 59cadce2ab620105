"""The balancer role: nginx proxying to every host of the ``web`` group.

The backends come from the inventory (``inventory.get_group("web")``: their ``orb_ip`` host
data and their group's ``port``); a backend that does not answer is skipped
(``proxy_next_upstream``), so the site stays up while one is down.
"""

from io import StringIO

from pyinfra import inventory
from pyinfra.operations import apt, files, systemd

backends = "".join(
    f"    server {web.data.orb_ip}:{web.data.get('port', 8080)} max_fails=1 fail_timeout=5s;\n"
    for web in inventory.get_group("web")
)
CONFIG = (
    f"upstream backends {{\n{backends}}}\n"
    "server {\n"
    "    listen 80 default_server;\n"
    "    location / {\n"
    "        proxy_pass http://backends;\n"
    "        proxy_next_upstream error timeout http_502 http_503;\n"
    "        proxy_connect_timeout 2s;\n"
    "    }\n"
    "}\n"
)

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
site = files.put(
    name=f"Balance over {len(inventory.get_group('web'))} backends",
    src=StringIO(CONFIG),
    dest="/etc/nginx/conf.d/balancer.conf",
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
    name="Reload nginx for the new backends",
    service="nginx",
    reloaded=True,
    _if=site.did_change,
    _sudo=True,
)
