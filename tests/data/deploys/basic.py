"""Idempotent deploy used by tests/sim: users, uploads (path, StringIO, root-owned), template,
line edits, and file names full of shell metacharacters.  Host data (optional): ``basic_user``,
``greeting``, ``weird_dir``."""

from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.operations import files, server

HERE = Path(__file__).parent
USER = host.data.get("basic_user", "alice")
GREETING = host.data.get("greeting", "hello")
WEIRD_DIR = host.data.get("weird_dir", "/tmp/weird dir 'single' \"double\" $HOME; echo pwned")

server.user(  # noqa: S604 - `shell` is the login shell, not a subprocess flag
    name="Create user",
    user=USER,
    shell="/bin/bash",
    create_home=True,
    _sudo=True,
)

files.put(
    name="Upload motd from a path to a root-owned destination",
    src=str(HERE / "files" / "motd.txt"),
    dest="/etc/orb-test-motd",
    mode="644",
    _sudo=True,
)

files.put(
    name="Upload from StringIO",
    src=StringIO("stringio content ünïcode\n"),
    dest="/tmp/orb-stringio.txt",
)

files.template(
    name="Render app.conf",
    src=str(HERE / "templates" / "app.conf.j2"),
    dest="/etc/orb-test-app.conf",
    user="root",
    group=USER,
    mode="640",
    greeting=GREETING,
    _sudo=True,
)

files.line(
    name="Ensure a line in a root-owned file",
    path="/etc/orb-test-lines.conf",
    line="managed = yes",
    _sudo=True,
)

files.directory(
    name="Create a directory with metacharacters in its name",
    path=WEIRD_DIR,
)

files.put(
    name="Upload into the metacharacter directory",
    src=StringIO("weird\n"),
    dest=f"{WEIRD_DIR}/file 'with' $quotes; and spaces.txt",
)
