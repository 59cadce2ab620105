"""A deploy whose second operation fails with a recognisable stderr text."""

from pyinfra.operations import server

server.shell(name="Works", commands=["true"])

server.shell(
    name="Fails on purpose",
    commands=["echo 'intentional failure: no such widget' >&2; exit 7"],
)

server.shell(name="Never reached", commands=["touch /tmp/orb-never-reached"])
