"""A catalogue of bad inputs: each gets its own clear error, and none runs anything.

* marker values (one run holds them all: collection reports every problem at once);
* option values from the command line, the environment and the ini file;
* factory keyword arguments;
* test ids full of shell metacharacters (they become valid machine names, nothing is executed);
* a deploy file that raises, one with a syntax error.

"Runs nothing" is checked in the simulator's op log (no ``create``, ``clone`` or ``run``), and
with canary files that a shell would have created.
"""

from __future__ import annotations

import re

import pytest

from orbsim.oplog import count, read_ops
from tests.plugin.conftest import OrbEnv
from tests.reliability.conftest import leaks, run_pytester

MACHINE_CMDS = ("create", "clone", "run", "push", "pull", "start")

#: test name -> (marker arguments, expected message fragment)
BAD_MARKERS = {
    "test_isolation": ("isolation='fn'", "isolation must be one of session, module, function"),
    "test_image_space": ("image='debian bookworm'", "is not an image string"),
    "test_image_shell": ("image='debian:12; touch CANARY'", "is not an image string"),
    "test_image_subst": ("image='$(touch CANARY)'", "is not an image string"),
    "test_image_type": ("image=12", "is not an image string"),
    "test_image_distro": ("image='windows:11'", "unknown distro 'windows'"),
    "test_arch": ("arch='sparc'", "architecture must be one of amd64, arm64, i386"),
    "test_user_root": ("user='root'", "the default user must be a lower-case Linux user name"),
    "test_user_shell": ("user='bob;touch CANARY'", "the default user must be a lower-case"),
    "test_user_data": ("user_data='missing.yaml'", "no such file"),
    "test_deploy": ("deploy='missing_deploy.py'", "no such file"),
    "test_name_semicolon": ("name='a;touch CANARY'", "a machine name is 2-40 characters"),
    "test_name_subst": ("name='$(touch CANARY)'", "a machine name is 2-40 characters"),
    "test_name_backtick": ("name='`touch CANARY`'", "a machine name is 2-40 characters"),
    "test_name_space": ("name='my box'", "a machine name is 2-40 characters"),
    "test_name_upper": ("name='MyBox'", "a machine name is 2-40 characters"),
    "test_name_dash": ("name='-rf'", "a machine name is 2-40 characters"),
    "test_name_reserved": ("name='default'", "is reserved by OrbStack"),
    "test_name_isolation": ("name='fixed-box', isolation='function'", "needs isolation='session'"),
    "test_unknown_key": ("imgae='debian'", "unknown argument(s) imgae"),
    "test_positional": ("'debian:bookworm'", "takes keyword arguments only"),
}


def _marker_suite() -> str:
    lines = ["import pytest", ""]
    for test, (args, _) in BAD_MARKERS.items():
        lines += [f"@pytest.mark.orbstack({args})", f"def {test}(orb_vm):", "    pass", ""]
    lines += ["def test_good(orb_vm):", "    pass", ""]
    return "\n".join(lines)


def _no_machine_calls(env: OrbEnv) -> None:
    ops = [op["cmd"] for op in read_ops(env.sim.home)]
    assert not [c for c in ops if c in MACHINE_CMDS], ops


def test_bad_marker_values_each_get_their_error_and_nothing_runs(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    pytester.makepyfile(test_markers=_marker_suite())
    result = run_pytester(pytester)
    out = result.stdout.str() + result.stderr.str()
    assert "invalid orbstack configuration" in out
    for test, (_args, fragment) in BAD_MARKERS.items():
        # the line names the test and the marker as written, then says what is wrong
        line = next((ln for ln in out.splitlines() if f"test_markers.py::{test}:" in ln), None)
        assert line is not None, f"no error for {test}:\n{out[-4000:]}"
        assert "@pytest.mark.orbstack" in line, line
        assert fragment in line, (fragment, line)
    assert "test_markers.py::test_good:" not in out
    assert result.ret != pytest.ExitCode.OK
    _no_machine_calls(orb_env)
    assert not list(pytester.path.rglob("CANARY"))
    assert leaks(orb_env).clean


def test_bad_marker_is_a_usage_error_not_an_internal_error(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    pytester.makepyfile(
        test_one="""
        import pytest
        @pytest.mark.orbstack(isolation="fn")
        def test_x(orb_vm):
            pass
        """
    )
    result = run_pytester(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()[-3000:]
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


#: (arguments, environment, ini, expected fragment)
BAD_OPTIONS = [
    (["--orbstack-backend=docker"], {}, "", "--orbstack-backend='docker' (from command line): "
     "must be one of auto, orbctl, sim"),
    (["--orbstack-timeout=0"], {}, "", "must be a positive, finite number of seconds"),
    (["--orbstack-timeout=nan"], {}, "", "must be a positive, finite number of seconds"),
    (["--orbstack-timeout=soon"], {}, "", "--orbstack-timeout='soon' (from command line)"),
    (["--orbstack-retries=-1"], {}, "", "--orbstack-retries='-1' (from command line): must not "
     "be negative"),
    (["--orbstack-retries=two"], {}, "", "must be a whole number"),
    (["--orbstack-keep=sometimes"], {}, "", "must be one of never, on-failure, always"),
    (["--orbstack-image=debian;touch CANARY"], {}, "", "is not an image string"),
    (["--orbstack-max-creates=-3"], {}, "", "must not be negative"),
    (["--orbstack-pool-size=lots"], {}, "", "must be auto or a whole number"),
    ([], {"ORBSTACK_TIMEOUT": "-5"}, "", "(from env ORBSTACK_TIMEOUT): must be a positive"),
    ([], {"ORBSTACK_REUSE": "perhaps"}, "", "(from env ORBSTACK_REUSE): must be true or false"),
    ([], {}, "orbstack_keep = maybe", "(from ini orbstack_keep): must be one of never"),
    ([], {"ORBSTACK_BACKEND": "$(touch CANARY)"}, "", "must be one of auto, orbctl, sim"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "env", "ini", "fragment"), BAD_OPTIONS, ids=[f"{i}" for i in range(len(BAD_OPTIONS))]
)
def test_bad_option_values_are_usage_errors(
    pytester: pytest.Pytester,
    orb_env: OrbEnv,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    ini: str,
    fragment: str,
) -> None:
    pytester.makepyfile(test_opt="def test_x(orb_vm):\n    pass\n")
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = run_pytester(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()[-3000:]
    err = result.stderr.str()
    assert fragment in err, err
    assert "Traceback" not in err
    assert read_ops(orb_env.sim.home) == []  # not even a status probe
    assert not list(pytester.path.rglob("CANARY"))


def test_infinite_timeout_is_a_usage_error(pytester: pytest.Pytester, orb_env: OrbEnv) -> None:
    pytester.makepyfile(test_opt="def test_x(orb_vm):\n    pass\n")
    result = run_pytester(pytester, "--orbstack-timeout=inf")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()[-3000:]


def test_orbctl_path_with_shell_metacharacters_is_not_run(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    """A bad executable is reported (skip, or error with --orbstack-required), never handed
    to a shell."""
    pytester.makepyfile(test_opt="def test_x(orb_vm):\n    pass\n")
    bad = "orbsim; touch CANARY"
    result = run_pytester(pytester, f"--orbstack-orbctl={bad}", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"*orbctl executable {bad!r} does not exist*"])
    result = run_pytester(pytester, f"--orbstack-orbctl={bad}", "--orbstack-required")
    result.assert_outcomes(errors=1)
    assert "--orbstack-required" in result.stdout.str()
    assert not list(pytester.path.rglob("CANARY"))
    assert read_ops(orb_env.sim.home) == []


def test_bad_factory_arguments_raise_config_error_and_create_nothing(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    pytester.makepyfile(
        test_factory="""
        import pytest
        from pytest_orbstack import ConfigError

        BAD = [
            (dict(name="x; touch CANARY", isolation="session"), "a machine name is 2-40"),
            (dict(image="debian:12 && touch CANARY"), "is not an image string"),
            (dict(user="$(touch CANARY)"), "the default user must be"),
            (dict(isolation="per-test"), "isolation must be one of"),
            (dict(deploy="nope.py"), "no such file"),
            (dict(colour="blue"), "unknown argument(s) colour"),
        ]

        @pytest.mark.parametrize("kwargs,fragment", BAD)
        def test_bad(orb_vm_factory, kwargs, fragment):
            with pytest.raises(ConfigError) as exc:
                orb_vm_factory(**kwargs)
            assert fragment in str(exc.value)
            assert "orb_vm_factory(" in str(exc.value)  # it names the call it came from
        """
    )
    result = run_pytester(pytester)
    result.assert_outcomes(passed=6)
    _no_machine_calls(orb_env)
    assert not list(pytester.path.rglob("CANARY"))
    assert leaks(orb_env).clean


METACHAR_IDS = ["a[b]", "x/y/z", "semi;colon", "$(touch CANARY)", "`touch CANARY`", "sp ace|pipe"]


def test_test_ids_with_shell_metacharacters_become_valid_machine_names(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    pytester.makepyfile(
        test_ids=f"""
        import re
        import pytest

        @pytest.mark.orbstack(isolation="function")
        @pytest.mark.parametrize("case", {METACHAR_IDS!r}, ids={METACHAR_IDS!r})
        def test_meta(orb_vm, case):
            assert re.fullmatch(r"[a-z0-9][a-z0-9-]+", orb_vm.name), orb_vm.name
            assert orb_vm.run(["hostname"]).stdout.strip() == orb_vm.name
        """
    )
    result = run_pytester(pytester, "--orbstack-pool-size=0")
    result.assert_outcomes(passed=len(METACHAR_IDS))
    names = [
        op["args"][-1]
        for op in read_ops(orb_env.sim.home)
        if op["cmd"] in ("create", "clone") and "-base-" not in op["args"][-1]
    ]
    assert len(names) == len(METACHAR_IDS)
    assert all(re.fullmatch(r"orbpt-[a-z0-9-]+", n) and len(n) <= 63 for n in names), names
    assert not list(pytester.path.rglob("CANARY"))
    assert leaks(orb_env).clean


RAISING_DEPLOY = 'raise RuntimeError("deploy exploded on purpose")\n'
SYNTAX_DEPLOY = "from pyinfra.operations import server\nserver.shell(commands=[\n"


def test_deploy_file_that_raises_fails_its_tests_clearly_and_leaves_nothing(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    # in a directory of their own: a deploy fingerprints its whole directory, and pytester puts
    # the inner run's basetemp beside the test file (the fingerprint would change mid-run)
    deploys = pytester.mkdir("deploys")
    (deploys / "raising.py").write_text(RAISING_DEPLOY)
    (deploys / "broken.py").write_text(SYNTAX_DEPLOY)
    pytester.makepyfile(
        test_deploys="""
        import pytest

        @pytest.mark.orbstack(isolation="function", deploy="deploys/raising.py")
        @pytest.mark.parametrize("n", range(2))
        def test_raising(orb_vm, n):
            pass

        @pytest.mark.orbstack(isolation="function", deploy="deploys/broken.py")
        def test_broken(orb_vm):
            pass

        def test_unaffected(orb_vm):
            assert orb_vm.run(["true"]).ok
        """
    )
    result = run_pytester(pytester, "--orbstack-pool-size=0")
    result.assert_outcomes(errors=3, passed=1)
    out = result.stdout.str()
    assert "deploy exploded on purpose" in out
    assert "raising.py" in out
    assert "broken.py" in out and "SyntaxError" in out
    # one template per deploy was tried, once: the second test fails fast with the same error
    clones = [op["args"][-1] for op in read_ops(orb_env.sim.home) if op["cmd"] == "clone"]
    assert len([n for n in clones if "-tpl-" in n]) == 2, clones
    # no machine for the failing tests was made (only test_unaffected's session machine)
    assert [n for n in clones if "-tpl-" not in n and "-s-" not in n] == []
    assert count(orb_env.sim.home, "create") == 1  # the base both templates were cloned from
    assert leaks(orb_env).clean
