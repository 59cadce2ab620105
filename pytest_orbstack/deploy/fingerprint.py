"""``deploy_fingerprint``: a hash of what a deploy would do, for template cache keys.

Used by :mod:`pytest_orbstack.lifecycle` to key template machines; nothing here runs a deploy or
imports pyinfra (its version is read from the installed distribution's metadata).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.metadata
import inspect
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_orbstack.deploy.targets import DeployTarget, resolve_deploy_file

#: Files bigger than this are hashed by name and size only.
FINGERPRINT_MAX_FILE_BYTES = 4 * 1024 * 1024
#: Beyond this many files in the deploy's tree, only referenced files count.
FINGERPRINT_MAX_FILES = 2000
#: Directory names never walked.
FINGERPRINT_SKIP_DIRS = frozenset(
    {
        "__pycache__",
        "node_modules",
        "venv",
        ".venv",
        ".git",
        ".hg",
        ".svn",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
    }
)
_FINGERPRINT_VERSION = "pytest-orbstack-deploy-fingerprint-v1"


def _pyinfra_version() -> str:
    try:
        return importlib.metadata.version("pyinfra")
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _walk_files(root: Path) -> list[Path] | None:
    """Files under ``root`` (skipping hidden and cache directories); None if too many."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if d not in FINGERPRINT_SKIP_DIRS and not d.startswith(".")
        )
        for filename in sorted(filenames):
            if filename.startswith(".") or filename.endswith((".pyc", ".pyo")):
                continue
            found.append(Path(dirpath) / filename)
            if len(found) > FINGERPRINT_MAX_FILES:
                return None
    return found


def _referenced_paths(deploy_file: Path) -> list[Path]:
    """Existing files named by string literals of ``deploy_file`` (relative to its directory or
    the current directory, or absolute); directories contribute their files."""
    try:
        tree = ast.parse(deploy_file.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return []
    found: list[Path] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        text = node.value
        if not text or "\n" in text or len(text) > 1024 or text.startswith(("http:", "https:")):
            continue
        for base in (deploy_file.parent, Path.cwd()):
            candidate = (base / text).expanduser()
            try:
                if candidate.is_file():
                    found.append(candidate.resolve())
                elif candidate.is_dir() and text not in (".", "..", "/") and len(text) > 1:
                    files = _walk_files(candidate)
                    found.extend(p.resolve() for p in files or [])
                else:
                    continue
            except OSError:
                continue
            break
    return found


def _hash_file(hasher: Any, label: str, path: Path) -> None:
    hasher.update(f"\0file\0{label}\0".encode())
    try:
        size = path.stat().st_size
        if size > FINGERPRINT_MAX_FILE_BYTES:
            hasher.update(f"size={size}".encode())
            return
        hasher.update(path.read_bytes())
    except OSError as exc:
        hasher.update(f"unreadable:{type(exc).__name__}".encode())


def deploy_fingerprint(
    target: DeployTarget,
    *,
    data: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
) -> str:
    """A sha256 hex digest that changes when the deploy would (probably) do something else.

    The rule, for a deploy **file**: the pyinfra version, the deploy file's content, and every
    file under the deploy file's directory tree (relative path + content), sorted by path,
    skipping hidden entries, ``__pycache__``/``*.pyc``, ``venv``/``node_modules`` and VCS/tool
    caches; files over 4 MiB count by path and size only.  If the tree holds more than 2000
    files, only the deploy file plus the files its string literals name are used.  Files named
    by string literals outside the tree (e.g. ``files.put(src="../shared/motd")``, or absolute
    paths) are added too.  For a **callable**: the pyinfra version, its module name, qualname
    and the module's whole source (falling back to the function's bytecode and constants when
    the source is unavailable).  ``data`` and ``config`` (the deploy's host data and pyinfra
    config, optional) are folded in as sorted JSON.

    Not covered: files read by computed paths outside the deploy's directory, remote content
    (URLs, apt repositories), environment variables.  Use it as part of a cache key, not as
    proof of equality.
    """
    hasher = hashlib.sha256()
    hasher.update(_FINGERPRINT_VERSION.encode())
    hasher.update(f"\0pyinfra={_pyinfra_version()}".encode())
    if callable(target):
        func = inspect.unwrap(getattr(target, "_inner", target))
        module_name = getattr(func, "__module__", None) or ""
        qualname = getattr(func, "__qualname__", None) or repr(func)
        hasher.update(f"\0callable\0{module_name}\0{qualname}\0".encode())
        source: str | None = None
        module = sys.modules.get(module_name)
        with contextlib.suppress(TypeError, OSError):
            source = inspect.getsource(module) if module is not None else inspect.getsource(func)
        if source is None:
            code = getattr(func, "__code__", None)
            if code is not None:
                hasher.update(code.co_code)
                hasher.update(repr(code.co_consts).encode())
            else:
                hasher.update(repr(func).encode())
        else:
            hasher.update(source.encode())
    else:
        path = resolve_deploy_file(target)
        root = path.parent
        hasher.update(f"\0deploy\0{path.name}\0".encode())
        hasher.update(path.read_bytes())
        tree = _walk_files(root)
        files: dict[str, Path] = {}
        for file in tree if tree is not None else []:
            files[file.relative_to(root).as_posix()] = file
        for ref in _referenced_paths(path):
            try:
                label = ref.relative_to(root).as_posix()
            except ValueError:
                label = str(ref)
            files.setdefault(label, ref)
        for label in sorted(files):
            _hash_file(hasher, label, files[label])
    if data:
        hasher.update(b"\0data\0")
        hasher.update(json.dumps(dict(data), sort_keys=True, default=repr).encode())
    if config:
        hasher.update(b"\0config\0")
        hasher.update(json.dumps(dict(config), sort_keys=True, default=repr).encode())
    return hasher.hexdigest()


__all__ = ["deploy_fingerprint"]
