"""Which orbctl is run, outside the plugin's options: the connector and ``orb://`` hosts agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_orbstack import testinfra_backend
from pytest_orbstack.errors import ConfigError


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for var in ("ORBSTACK_ORBCTL", "ORBSTACK_BACKEND"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no orbctl, no orbsim on PATH
    testinfra_backend.forget_client_factory()
    return tmp_path


def _exe(directory: Path, name: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_orb_hosts_use_the_simulator_with_orbstack_backend_sim(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    orbsim = _exe(clean_env, "orbsim")
    monkeypatch.setattr("sys.executable", str(clean_env / "elsewhere" / "python"))
    monkeypatch.setenv("ORBSTACK_BACKEND", "sim")
    assert testinfra_backend.default_client().executable == str(orbsim)


def test_orb_hosts_prefer_an_explicit_orbctl(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = _exe(clean_env, "my-orbctl")
    _exe(clean_env, "orbsim")
    monkeypatch.setenv("ORBSTACK_BACKEND", "sim")
    monkeypatch.setenv("ORBSTACK_ORBCTL", str(explicit))
    assert testinfra_backend.default_client().executable == str(explicit)


def test_without_any_orbctl_the_error_names_the_simulator_setting(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.executable", str(clean_env / "elsewhere" / "python"))
    with pytest.raises(ConfigError, match="ORBSTACK_BACKEND=sim"):
        testinfra_backend.default_client()
