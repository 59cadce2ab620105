"""Deploy targets and the one path rule.

A target is a deploy file (``str`` or path) or a callable that calls pyinfra operations.

**The path rule.**  A relative deploy path is resolved against the directory of the file of the
test that asks for it - the marker's ``deploy=``, ``orb_vm.deploy(...)``,
``assert_idempotent(...)``, ``orb_deploy(...)`` and ``run_deploy(...)`` alike.  Inside a fixture
it is the file that defines the fixture (a ``conftest.py`` fixture resolves next to that
``conftest.py``), whichever test first needed it.  Outside pytest it is the current directory.

The plugin tells this module who is asking (:func:`requested_by`, set around each test and each
fixture setup); a session machine shared by several test files therefore resolves each call
against the file of the test making it.  The setting is process-wide, not per thread, so threads
a test starts (deploying to two machines at once, say) resolve like the test itself.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

DeployTarget: TypeAlias = "str | os.PathLike[str] | Callable[..., Any]"


@dataclass(frozen=True)
class Requester:
    """The test (or fixture) on whose behalf deploys run: its file, and how to name it."""

    path: Path
    label: str

    @property
    def base_dir(self) -> Path:
        return self.path.parent


_current: Requester | None = None


@contextlib.contextmanager
def requested_by(path: str | os.PathLike[str] | None, label: str) -> Iterator[None]:
    """Resolve relative deploy paths against ``path``'s directory while the block runs."""
    global _current
    saved = _current
    _current = Requester(Path(path).resolve(), label) if path is not None else saved
    try:
        yield
    finally:
        _current = saved


def current_requester() -> Requester | None:
    return _current


def _where() -> str:
    return f"{_current.label}: " if _current is not None else ""


def describe_target(target: DeployTarget) -> str:
    if callable(target):
        module = getattr(target, "__module__", None) or "?"
        qualname = getattr(target, "__qualname__", None) or repr(target)
        return f"{module}.{qualname}"
    return os.fspath(target)


def check_target(target: object, call: str = "deploy") -> None:
    """Raise ``TypeError`` naming the test when ``target`` is neither a path nor a callable."""
    if callable(target) or isinstance(target, (str, os.PathLike)):
        return
    raise TypeError(
        f"{_where()}{call}({target!r}): the target must be a deploy file (a str or "
        f"pathlib.Path, relative to the test file) or a callable that calls pyinfra operations"
    )


def resolve_deploy_file(target: str | os.PathLike[str]) -> Path:
    """The absolute path of a deploy file, by the path rule; ``FileNotFoundError`` naming the
    test, where it looked and why, when there is no such file."""
    raw = os.fspath(target)
    path = Path(raw).expanduser()
    requester = _current
    if not path.is_absolute():
        base = requester.base_dir if requester is not None else Path.cwd()
        path = base / path
    if not path.is_file():
        if Path(raw).expanduser().is_absolute():
            rule = "the path is absolute"
        elif requester is not None:
            rule = (
                f"relative deploy paths are resolved against the directory of "
                f"{requester.path.name}, the file of the test or fixture that asks"
            )
        else:
            rule = "outside a test, relative paths are resolved against the current directory"
        raise FileNotFoundError(
            f"{_where()}deploy file not found: {raw!r} (looked for {path}; {rule}); fix the "
            f"path or pass an absolute one"
        )
    return path.resolve()


def callable_dir(func: Callable[..., Any]) -> str:
    """The directory of the module defining ``func`` (pyinfra's ``state.cwd`` for it)."""
    inner = inspect.unwrap(getattr(func, "_inner", func))
    with contextlib.suppress(TypeError, OSError):
        source_file = inspect.getsourcefile(inner)
        if source_file:
            return str(Path(source_file).resolve().parent)
    return os.getcwd()


__all__ = [
    "DeployTarget",
    "Requester",
    "callable_dir",
    "check_target",
    "current_requester",
    "describe_target",
    "requested_by",
    "resolve_deploy_file",
]
