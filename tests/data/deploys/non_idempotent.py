"""A deploy that always changes something: ``server.shell`` runs every time."""

from pyinfra.operations import files, server

files.directory(name="Stable directory", path="/tmp/orb-stable")

server.shell(
    name="Append a timestamp",
    commands=["date +%s%N >> /tmp/orb-stamps"],
)
