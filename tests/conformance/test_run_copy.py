"""``run`` (exit status, users, working directory, environment, arguments) and ``push``/``pull``
as the default user (contract §2 run, §2 push/pull, §1 tty)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance.conftest import USER
from tests.conformance.harness import Checks, OrbctlUnderTest


@pytest.mark.reference("§2 run")
def test_run_exit_status_and_streams(orbctl: OrbctlUnderTest, conf: Checks, running: str) -> None:
    for code in (0, 1, 3, 42):
        call = orbctl("run", "-m", running, "sh", "-c", f"exit {code}")
        conf.equal(f"run's exit status is the command's ({code})", call.returncode, code,
                   call=call)  # fmt: skip
    call = orbctl("run", "-m", running, "sh", "-c", "echo out; echo err >&2")
    conf.equal("stdout and stderr stay apart", (call.stdout, call.stderr), ("out\n", "err\n"),
               call=call)  # fmt: skip
    call = orbctl("run", "-m", running, "cat", input=b"hello stdin")
    conf.equal("stdin is passed to the command", call.stdout, "hello stdin", call=call)
    call = orbctl("run", "-m", running, "printf", "%s|", "$HOME", "a b", "*", "")
    conf.equal("arguments reach the command as they are (no shell interpretation)",
               call.stdout, "$HOME|a b|*||", call=call)  # fmt: skip
    call = orbctl("run", "-m", running, "echo", "-m", "x")
    conf.equal("flags are read only before the first non-flag argument", call.stdout, "-m x\n",
               call=call)  # fmt: skip
    call = orbctl("run", "-m", running, "-s", "echo a | tr a b")
    conf.equal("-s runs the arguments as a shell script", call.stdout, "b\n", call=call)
    for alias in ("exec", "shell"):
        call = orbctl(alias, "-m", running, "true")
        conf.equal(f"'{alias}' is an alias of run", call.returncode, 0, section="§2 commands",
                   call=call)  # fmt: skip
    call = orbctl("run", "-m", running, "--", "true")
    conf.error("a literal -- before the command is rejected (2.0.1, #2122)", call,
               "Error: unknown flag --", section="§16 unchanged")  # fmt: skip
    call = orbctl("run", "-m", running, "--cmd", "true")
    conf.error("an unknown run flag", call, "Error: unknown flag --cmd")
    call = orbctl("run", "-m")
    conf.error("a run flag without its value", call, "^(Error: )?missing value for flag -m")


@pytest.mark.reference("§2 run")
def test_run_users_workdir_environment(orbctl: OrbctlUnderTest, conf: Checks, running: str) -> None:
    call = orbctl("run", "-m", running, "id", "-un")
    conf.equal("the default user is the machine's default_username", call.stdout, f"{USER}\n",
               call=call)  # fmt: skip
    call = orbctl("run", "-m", running, "-u", "root", "id", "-u")
    conf.equal("-u root runs as uid 0", call.stdout, "0\n", call=call)
    call = orbctl("run", "-m", running, "sudo", "-n", "true")
    conf.equal("the default user has passwordless sudo", call.returncode, 0,
               section="§2 create", call=call)  # fmt: skip
    call = orbctl("run", "-m", running, "-w", "/tmp", "pwd")
    conf.equal("-w sets the working directory", call.stdout, "/tmp\n", call=call)
    call = orbctl("run", "-m", running, "-w", "/conformance/no/such/dir", "pwd")
    conf.equal("-w to a missing directory falls back to /", (call.returncode, call.stdout),
               (0, "/\n"), call=call)  # fmt: skip
    home = orbctl("run", "-m", running, "sh", "-c", 'printf %s "$HOME"').stdout
    call = orbctl("run", "-m", running, "-w", "", "pwd")
    conf.equal("-w '' means the user's home", call.stdout.strip(), home, call=call)
    env = {"CONF_FWD": "yes", "CONF_NOFWD": "no", "ORBENV": "CONF_FWD"}
    call = orbctl("run", "-m", running, "sh", "-c", 'echo "${CONF_FWD-unset}:${CONF_NOFWD-unset}"',
                  env=env)  # fmt: skip
    conf.equal("only variables named in ORBENV are forwarded", call.stdout, "yes:unset\n",
               call=call)  # fmt: skip
    call = orbctl("run", "-m", running, "sh", "-c", "echo $PATH")
    conf.that("the login PATH applies", "/usr/bin" in call.stdout,
              expected="a PATH with /usr/bin", got=call.stdout.strip(), call=call)  # fmt: skip


@pytest.mark.reference("§1 tty")
def test_run_errors_before_exec(orbctl: OrbctlUnderTest, conf: Checks, running: str) -> None:
    """Without a PTY, an error before the command starts is exit 1 and (inferred) nothing on
    stderr; the plugin treats 'exit 1, no output' as 'ask info whether the machine exists'."""
    missing = orbctl.name("missing")
    call = orbctl("run", "-m", missing, "true")
    conf.equal("run in an unknown machine exits 1", call.returncode, 1, call=call)
    conf.tolerate(
        "... and prints (inferred) nothing",
        call.stderr,
        {"empty stderr": not call.stderr.strip(), "the server's text": "not found" in call.stderr},
        call=call,
    )
    conf.equal("... and nothing on stdout", call.stdout, "", call=call)
    call = orbctl("run", "-m", running, "-u", "conf-no-such-user", "true")
    conf.that("run as an unknown user fails", call.returncode != 0,
              expected="a non-zero exit", got=call.returncode, call=call)  # fmt: skip
    call = orbctl("push", "-m", missing, __file__, "/tmp/")
    conf.equal("push to an unknown machine exits 1", call.returncode, 1,
               section="§2 push/pull", call=call)  # fmt: skip


@pytest.mark.reference("§2 push/pull")
def test_push_pull_as_default_user(
    orbctl: OrbctlUnderTest, conf: Checks, running: str, host_dir: Path
) -> None:
    src = host_dir / "conf-push.txt"
    src.write_text("pushed\n")
    call = orbctl("push", "-m", running, str(src), "conf-pushed.txt")
    conf.equal("push exits 0 and prints nothing", (call.returncode, call.stdout), (0, ""),
               call=call)  # fmt: skip
    who = orbctl("run", "-m", running, "-w", "", "stat", "-c", "%U %n", "conf-pushed.txt")
    conf.equal("a relative destination is in the default user's home, owned by that user",
               who.stdout, f"{USER} conf-pushed.txt\n", call=who)  # fmt: skip
    call = orbctl("push", "-m", running, str(src), "/tmp/conf-abs.txt")
    cat = orbctl("run", "-m", running, "cat", "/tmp/conf-abs.txt")
    conf.equal("push to an absolute path", (call.returncode, cat.stdout), (0, "pushed\n"),
               call=call)  # fmt: skip
    call = orbctl("push", "-m", running, str(src), "/root/conf-denied.txt")
    conf.that("push cannot write where the default user may not (no -u: copies as the user)",
              call.returncode != 0, expected="a non-zero exit (cp: Permission denied)",
              got=(call.returncode, call.first_err), call=call)  # fmt: skip
    tree = host_dir / "conf-tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_text("deep\n")
    call = orbctl("push", "-m", running, str(tree), "/tmp/")
    cat = orbctl("run", "-m", running, "cat", "/tmp/conf-tree/sub/f")
    conf.equal("push copies directories recursively (cp -rf)", (call.returncode, cat.stdout),
               (0, "deep\n"), call=call)  # fmt: skip
    call = orbctl("push", "-m", running, str(host_dir / "conf-missing"), "/tmp/")
    conf.that("push of a missing source fails", call.returncode != 0,
              expected="a non-zero exit", got=call.returncode, call=call)  # fmt: skip
    call = orbctl("push", "-u", "root", "-m", running, str(src), "/tmp/")
    conf.tolerate("push has no -u flag (inferred)", (call.returncode, call.first_err),
                  {"rejected with a non-zero exit": call.returncode != 0}, call=call)  # fmt: skip

    dest = host_dir / "pulled.txt"
    call = orbctl("pull", "-m", running, "conf-pushed.txt", str(dest))
    conf.equal("pull of a path relative to the user's home",
               (call.returncode, dest.read_text() if dest.exists() else None), (0, "pushed\n"),
               call=call)  # fmt: skip
    dest2 = host_dir / "hostname"
    call = orbctl("pull", "-m", running, "/etc/hostname", str(dest2))
    conf.equal("pull of an absolute path", dest2.read_text() if dest2.exists() else None,
               f"{running}\n", call=call)  # fmt: skip
    call = orbctl("pull", "-m", running, "/conformance/no/such/file", str(host_dir / "x"))
    conf.that("pull of a missing file fails", call.returncode != 0,
              expected="a non-zero exit", got=call.returncode, call=call)  # fmt: skip
