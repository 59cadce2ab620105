# The benchmark's three-host deploy: each host writes what it knows of the web group.
from io import StringIO

from pyinfra import host, inventory
from pyinfra.operations import files, server

web = " ".join(str(h.data.get("orb_ip")) for h in inventory.get_group("web", []))
files.put(name="facts", src=StringIO(f"{host.name} sees {web}\n"), dest="/tmp/bench-facts")
server.shell(name="a command", commands=["true"])
