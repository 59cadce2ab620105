"""pyinfra's connector arguments as the ``@orb`` connector reads them (pure, no pyinfra import):
who a command runs as, and ``_stdin`` with pyinfra's semantics.  The connector itself is
:mod:`pytest_orbstack.connector`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: Connector arguments that change *who* runs a command (privilege escalation).
AUTH_ARGUMENTS = (
    "_sudo",
    "_sudo_user",
    "_use_sudo_login",
    "_sudo_password",
    "_preserve_sudo_env",
    "_su_user",
    "_use_su_login",
    "_preserve_su_env",
    "_su_shell",
    "_su_password",
    "_doas",
    "_doas_user",
    "_dzdo",
    "_dzdo_user",
)


def stdin_bytes(stdin: Any) -> bytes | None:
    """``_stdin`` as bytes, with pyinfra's semantics (each line gets a trailing newline)."""
    if stdin is None or stdin == "" or stdin == b"":
        return None
    if isinstance(stdin, (bytes, bytearray)):
        return bytes(stdin)
    if hasattr(stdin, "readlines"):
        stdin = stdin.readlines()
    if isinstance(stdin, str) or not isinstance(stdin, Iterable):
        stdin = [stdin]
    chunks: list[bytes] = []
    for line in stdin:
        text = line.decode() if isinstance(line, (bytes, bytearray)) else str(line)
        if not text.endswith("\n"):
            text += "\n"
        chunks.append(text.encode())
    return b"".join(chunks)


def without_auth(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """``arguments`` without privilege escalation (and ``_chdir``, which may need it)."""
    return {k: v for k, v in arguments.items() if k not in AUTH_ARGUMENTS and k != "_chdir"}


def runs_as_other_user(arguments: Mapping[str, Any]) -> bool:
    """True when commands run as a user who is neither the default user nor root."""
    for key in ("_su_user", "_sudo_user", "_doas_user", "_dzdo_user"):
        value = arguments.get(key)
        if value and value != "root":
            return True
    return False


__all__ = ["AUTH_ARGUMENTS", "runs_as_other_user", "stdin_bytes", "without_auth"]
