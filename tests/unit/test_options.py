"""Option precedence (options.py): command line > ini > environment > default, with the origin of
every value, and bad values rejected with a message naming the option, the value and where it
came from.  Runs anywhere: no orbctl or orbsim is needed (the executable may resolve to None).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_orbstack.options import OPTIONS, Option, required, resolve, settings_from_config
from pytest_orbstack.settings import Settings

BY_NAME = {opt.name: opt for opt in OPTIONS}
KEEP = BY_NAME["keep"]
REUSE = BY_NAME["reuse"]
REPORT = BY_NAME["report"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own ORBSTACK_* settings must not leak into these tests."""
    for opt in OPTIONS:
        if opt.env:
            monkeypatch.delenv(opt.env, raising=False)
    monkeypatch.delenv("ORBSTACK_STATE_DIR", raising=False)
    monkeypatch.delenv("ORBSIM_HOME", raising=False)


# -- resolve: the precedence rule --------------------------------------------------------------


def test_option_names() -> None:
    assert KEEP.cli == "--orbstack-keep"
    assert KEEP.dest == "orbstack_keep"
    assert BY_NAME["max-creates"].cli == "--orbstack-max-creates"
    assert BY_NAME["max-creates"].dest == "orbstack_max_creates"


@pytest.mark.parametrize(
    ("cli", "ini", "env", "value", "origin"),
    [
        ("always", "on-failure", "never", "always", "command line"),
        (None, "on-failure", "never", "on-failure", "ini orbstack_keep"),
        (None, "", "always", "always", "env ORBSTACK_KEEP"),
        (None, "", None, "never", "default"),
    ],
)
def test_precedence(cli: str | None, ini: str, env: str | None, value: str, origin: str) -> None:
    environ = {"ORBSTACK_KEEP": env} if env is not None else {}
    assert resolve(KEEP, cli=cli, ini=ini, environ=environ) == (value, origin)


def test_blank_ini_and_env_are_ignored() -> None:
    assert resolve(KEEP, cli=None, ini="   ", environ={"ORBSTACK_KEEP": " \t"}) == (
        "never",
        "default",
    )
    assert resolve(KEEP, cli=None, ini="", environ={"ORBSTACK_KEEP": "always"}) == (
        "always",
        "env ORBSTACK_KEEP",
    )


def test_ini_and_env_values_are_stripped() -> None:
    assert resolve(KEEP, cli=None, ini="  always\n", environ={})[0] == "always"
    assert resolve(KEEP, cli=None, ini="", environ={"ORBSTACK_KEEP": " always "})[0] == "always"


def test_command_line_empty_string_still_wins() -> None:
    """An explicit ``--orbstack-keep=`` (empty) is given, not absent: it is then validated."""
    assert resolve(KEEP, cli="", ini="always", environ={}) == ("", "command line")


def test_flag_on_command_line() -> None:
    assert resolve(REUSE, cli=True, ini="0", environ={"ORBSTACK_REUSE": "0"}) == (
        "1",
        "command line",
    )
    assert resolve(REUSE, cli=False, ini="1", environ={}) == ("0", "command line")


def test_flag_absent_falls_through_to_ini_then_env() -> None:
    assert resolve(REUSE, cli=None, ini="yes", environ={"ORBSTACK_REUSE": "0"}) == (
        "yes",
        "ini orbstack_reuse",
    )
    assert resolve(REUSE, cli=None, ini="", environ={"ORBSTACK_REUSE": "1"}) == (
        "1",
        "env ORBSTACK_REUSE",
    )
    assert resolve(REUSE, cli=None, ini="", environ={}) == ("0", "default")


def test_option_without_env_ignores_the_environment() -> None:
    assert REPORT.env is None
    assert resolve(REPORT, cli=None, ini="", environ={"ORBSTACK_REPORT": "x.json"}) == (
        None,
        "default",
    )


def test_non_string_ini_is_ignored() -> None:
    opt = Option("demo", "help", "DEMO", "d")
    assert resolve(opt, cli=None, ini=["x"], environ={}) == ("d", "default")


def test_every_option_has_help_and_dest() -> None:
    for opt in OPTIONS:
        assert opt.help
        assert opt.cli.startswith("--orbstack-")
        assert opt.dest.startswith("orbstack_") and "-" not in opt.dest
        if opt.env:
            assert opt.env.startswith("ORBSTACK_")


# -- settings_from_config through a real pytest.Config ----------------------------------------


def settings(pytester: pytest.Pytester, *args: str, ini: str = "") -> Settings:
    if ini:
        pytester.makeini("[pytest]\n" + ini)
    return settings_from_config(pytester.parseconfig(*args))


def usage_error(pytester: pytest.Pytester, *args: str, ini: str = "") -> str:
    with pytest.raises(pytest.UsageError) as info:
        settings(pytester, *args, ini=ini)
    return str(info.value)


def test_defaults(pytester: pytest.Pytester) -> None:
    s = settings(pytester)
    assert s.backend == "auto"
    assert s.default_image == "debian"  # no release hard-coded
    assert s.keep == "never"
    assert s.reuse is False
    assert s.timeout is None
    assert s.retries == 4
    assert s.max_creates == 0
    # pool_size's default (2, or "auto" = None) is being changed in parallel: not pinned here
    assert s.report_path is None


def test_each_source_reaches_settings(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORBSTACK_RETRIES", "7")
    monkeypatch.setenv("ORBSTACK_REUSE", "true")
    s = settings(
        pytester,
        "--orbstack-keep=always",
        "--orbstack-timeout=12.5",
        ini="orbstack_pool_size = 5\norbstack_image = ubuntu:24.04\n",
    )
    assert s.keep == "always"
    assert s.timeout == 12.5
    assert s.pool_size == 5
    assert s.default_image == "ubuntu:24.04"
    assert s.retries == 7
    assert s.reuse is True


def test_command_line_beats_ini_beats_env(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORBSTACK_KEEP", "always")
    monkeypatch.setenv("ORBSTACK_MAX_CREATES", "9")
    ini = "orbstack_keep = on-failure\norbstack_max_creates = 3\n"
    s = settings(pytester, "--orbstack-max-creates=1", ini=ini)
    assert s.keep == "on-failure"  # ini over env
    assert s.max_creates == 1  # command line over ini and env


def test_blank_ini_key_falls_back_to_env(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORBSTACK_KEEP", "on-failure")
    assert settings(pytester, ini="orbstack_keep =\n").keep == "on-failure"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("yes", True), ("ON", True), ("0", False), ("off", False), ("false", False)],
)
def test_reuse_flag_spellings_from_env(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("ORBSTACK_REUSE", value)
    assert settings(pytester).reuse is expected


def test_reuse_flag_on_command_line_beats_ini(pytester: pytest.Pytester) -> None:
    assert settings(pytester, "--orbstack-reuse", ini="orbstack_reuse = false\n").reuse is True


def test_required(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    assert required(pytester.parseconfig()) is False
    assert required(pytester.parseconfig("--orbstack-required")) is True
    monkeypatch.setenv("ORBSTACK_REQUIRED", "yes")
    assert required(pytester.parseconfig()) is True


def test_report_path_is_absolute(pytester: pytest.Pytester) -> None:
    s = settings(pytester, "--orbstack-report=out/report.json")
    assert s.report_path == (pytester.path / "out" / "report.json").resolve()


def test_state_dir_from_env(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ORBSTACK_STATE_DIR", str(tmp_path / "state"))
    assert settings(pytester).state_dir == tmp_path / "state"


def test_explicit_orbctl_is_used(pytester: pytest.Pytester, tmp_path: Path) -> None:
    exe = tmp_path / "my-orbctl"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    assert settings(pytester, f"--orbstack-orbctl={exe}").executable == str(exe)


def test_backends_never_share_a_registry(pytester: pytest.Pytester, tmp_path: Path) -> None:
    exe = tmp_path / "orbctl"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    keys = {
        settings(pytester, f"--orbstack-backend={b}", f"--orbstack-orbctl={exe}").registry_key
        for b in ("orbctl", "sim", "auto")
    }
    assert len(keys) == 3


# -- bad values: option, value and origin in the message ---------------------------------------


def test_bad_keep_from_command_line(pytester: pytest.Pytester) -> None:
    message = usage_error(pytester, "--orbstack-keep=sometimes")
    assert "--orbstack-keep='sometimes'" in message
    assert "(from command line)" in message
    assert "never, on-failure, always" in message


def test_negative_pool_size_from_env(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORBSTACK_POOL_SIZE", "-1")
    message = usage_error(pytester)
    assert "--orbstack-pool-size='-1'" in message
    assert "(from env ORBSTACK_POOL_SIZE)" in message
    assert "whole number" in message or "negative" in message


def test_infinite_timeout_from_ini(pytester: pytest.Pytester) -> None:
    message = usage_error(pytester, ini="orbstack_timeout = inf\n")
    assert "--orbstack-timeout='inf'" in message
    assert "(from ini orbstack_timeout)" in message
    assert "positive, finite" in message


@pytest.mark.parametrize(
    ("arg", "says"),
    [
        ("--orbstack-timeout=0", "positive"),
        ("--orbstack-timeout=-3", "positive"),
        ("--orbstack-timeout=nan", "positive"),
        ("--orbstack-timeout=1e400", "finite"),
        ("--orbstack-timeout=soon", "soon"),
        ("--orbstack-retries=2.5", "whole number"),
        ("--orbstack-retries=-1", "must not be negative"),
        ("--orbstack-max-creates=many", "whole number"),
        ("--orbstack-pool-size=", "whole number"),
        ("--orbstack-backend=docker", "auto, orbctl, sim"),
        ("--orbstack-image=windows:11", "unknown distro"),
        ("--orbstack-image=Debian", "DISTRO:VERSION"),
    ],
)
def test_bad_command_line_values(pytester: pytest.Pytester, arg: str, says: str) -> None:
    option, value = arg.split("=", 1)
    message = usage_error(pytester, arg)
    assert f"{option}={value!r} (from command line)" in message
    assert says in message


def test_bad_flag_value_from_env(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORBSTACK_REUSE", "maybe")
    message = usage_error(pytester)
    assert "--orbstack-reuse='maybe' (from env ORBSTACK_REUSE)" in message
    assert "true or false" in message


def test_bad_env_value_is_ignored_when_ini_overrides(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORBSTACK_RETRIES", "lots")
    assert settings(pytester, ini="orbstack_retries = 1\n").retries == 1
