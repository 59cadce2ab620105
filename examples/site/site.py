"""A load balancer in front of web backends: the site deploy of ``examples/test_site.py``.

Run it as a pyinfra user would, over an inventory with groups ``lb`` and ``web``::

    pyinfra inventory.py site.py -y

Each host gets the roles of its groups (``host.groups``); the balancer's configuration lists
the ``web`` group's addresses (``inventory.get_group("web")``), and ``group_data/web.py`` sets
the port the backends listen on.
"""

from pyinfra import host, local

if "web" in host.groups:
    local.include("roles/web.py")
if "lb" in host.groups:
    local.include("roles/lb.py")
