"""Every public exception of the plugin is defined in ``pytest_orbstack/errors.py`` and exported
from ``pytest_orbstack`` (so ``except pytest_orbstack.X`` works for anything a test may meet)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest_orbstack
from pytest_orbstack import errors

PACKAGE = Path(pytest_orbstack.__file__).parent


def _exception_classes() -> dict[str, str]:
    """class name -> module file, for every class in the package whose bases look like an
    exception (``...Error``, ``Exception``, ``...Exceeded``)."""
    found: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = [ast.unparse(b) for b in node.bases]
            if any(b.endswith(("Error", "Exception", "Exceeded")) for b in bases):
                found[node.name] = str(path.relative_to(PACKAGE))
    return found


def test_public_exceptions_live_in_errors_py() -> None:
    classes = _exception_classes()
    assert "ProvisionError" in classes and "CommandError" in classes  # the scan finds them
    elsewhere = {n: f for n, f in classes.items() if f != "errors.py" and not n.startswith("_")}
    assert not elsewhere, f"define these in pytest_orbstack/errors.py: {elsewhere}"


def test_every_public_exception_is_exported() -> None:
    public = {n for n in _exception_classes() if not n.startswith("_")}
    missing = public - set(pytest_orbstack.__all__)
    assert not missing, f"export from pytest_orbstack/__init__.py: {sorted(missing)}"
    for name in public:
        assert getattr(pytest_orbstack, name) is getattr(errors, name)
