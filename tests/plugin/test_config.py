"""Plugin behaviour that needs no machine: options, marker validation, skip/required."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

NO_ORBCTL = "--orbstack-orbctl=/nonexistent/orbctl"


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.orbstack(image=*isolation=*"])


def test_strict_markers_clean(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        @pytest.mark.orbstack(image="debian:bookworm")
        def test_plain():
            pass
        """
    )
    pytester.runpytest("--strict-markers", NO_ORBCTL).assert_outcomes(passed=1)


def test_help_group_lists_every_option(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*OrbStack machines (pytest-orbstack)*"])
    for option in [
        "backend",
        "orbctl",
        "image",
        "keep",
        "reuse",
        "required",
        "timeout",
        "retries",
        "max-creates",
        "report",
        "pool-size",
    ]:
        assert f"--orbstack-{option}" in result.stdout.str()


def test_unavailable_backend_skips_with_one_line_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_needs_machine(orb_vm):
            raise AssertionError("must not run")

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest("-rs", NO_ORBCTL)
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*pytest-orbstack: orbctl executable*does not exist*"])
    assert "Traceback" not in result.stdout.str()


def test_missing_orbctl_on_path_says_how_to_fix(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(pytester.path))
    monkeypatch.delenv("ORBSTACK_ORBCTL", raising=False)
    pytester.makepyfile("def test_x(orb_vm):\n    pass\n")
    result = pytester.runpytest("-rs", "--orbstack-backend=orbctl")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*orbctl not found on PATH*--orbstack-backend=sim*"])


def test_required_turns_skip_into_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(orb_vm):\n    pass\n\ndef test_plain():\n    pass\n")
    result = pytester.runpytest(NO_ORBCTL, "--orbstack-required")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*pytest-orbstack: orbctl executable*(--orbstack-required)*"])
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ('isolation="fn"', "isolation must be one of session, module, function"),
        ('imgae="debian"', "unknown argument(s) imgae"),
        ('image="debian bookworm"', "is not an image string"),
        ('image="windows:11"', "unknown distro 'windows'"),
        ('image="debian:bookworm;rm -rf /"', "is not an image string"),
        ('arch="sparc"', "architecture must be one of amd64, arm64, i386"),
        ('deploy="deploys/missing.py"', "no such file"),
        ('user="Root Admin"', "lower-case Linux user name"),
        ('name="bad_name"', "a machine name is 2-40 characters"),
        ('name="docker"', "reserved by OrbStack"),
        ('isolation="function", name="fixed"', "needs isolation='session'"),
        ('"debian"', "keyword arguments only"),
    ],
)
def test_bad_marker_is_a_usage_error_naming_test_and_fix(
    pytester: pytest.Pytester, marker: str, expected: str
) -> None:
    pytester.makepyfile(
        test_bad=f"""
        import pytest
        @pytest.mark.orbstack({marker})
        def test_web(orb_vm):
            pass
        """
    )
    result = pytester.runpytest(NO_ORBCTL)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "test_bad.py::test_web" in err
    assert expected in err
    assert "Traceback" not in err + result.stdout.str()


def test_class_and_module_markers_merge(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_merge="""
        import pytest
        pytestmark = pytest.mark.orbstack(image="ubuntu:noble", isolation="module")

        @pytest.mark.orbstack(arch="aarch64")
        class TestX:
            @pytest.mark.orbstack(isolation="fn")
            def test_one(self, orb_vm):
                pass
        """
    )
    result = pytester.runpytest(NO_ORBCTL)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*test_merge.py::TestX::test_one*image='ubuntu:noble'*isolation='fn'*arch='aarch64'*"]
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--orbstack-keep=sometimes"],
            "--orbstack-keep='sometimes' (from command line): must be one of never, on-failure, "
            "always",
        ),
        (["--orbstack-backend=docker"], "must be one of auto, orbctl, sim"),
        (["--orbstack-retries=-1"], "must not be negative"),
        (["--orbstack-max-creates=two"], "must be a whole number"),
        (["--orbstack-timeout=0"], "must be a positive, finite number of seconds"),
        (["--orbstack-image=debian:"], "is not an image string"),
        (["--orbstack-pool-size=x"], "must be auto or a whole number"),
    ],
)
def test_bad_option_values(pytester: pytest.Pytester, args: list[str], expected: str) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert expected in result.stderr.str()


def test_ini_and_env_values_are_validated_with_their_origin(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\norbstack_keep = maybe\n")
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--orbstack-keep='maybe' (from ini orbstack_keep)" in result.stderr.str()
    monkeypatch.setenv("ORBSTACK_RETRIES", "many")
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest()
    assert "--orbstack-retries='many' (from env ORBSTACK_RETRIES)" in result.stderr.str()


def test_command_line_beats_ini_beats_env(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORBSTACK_KEEP", "bogus-env")
    pytester.makeini("[pytest]\norbstack_keep = bogus-ini\n")
    pytester.makepyfile("def test_plain():\n    pass\n")
    # the command line wins, so neither bad value is seen
    pytester.runpytest("--orbstack-keep=always").assert_outcomes(passed=1)
    # without it the ini value is used (and rejected), not the environment's
    result = pytester.runpytest()
    assert "bogus-ini" in result.stderr.str()
    assert "bogus-env" not in result.stderr.str()


def test_tests_without_machines_are_untouched(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a():\n    pass\n\ndef test_b(tmp_path):\n    pass\n")
    result = pytester.runpytest(NO_ORBCTL)
    result.assert_outcomes(passed=2)
    assert "orbstack machines" not in result.stdout.str()
