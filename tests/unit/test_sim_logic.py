"""orbsim's pure logic, without root, LXC or Linux: the command table and its parsing, fault
decisions and their texts, the state machine's transition table and the settling of records
whose owner died.  (The simulator's machines are tested in tests/orbsim, as root.)"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from orbsim import cli, commands, faults, flags, helptext, oplog, transitions
from orbsim import state as S
from orbsim.ctx import Ctx
from orbsim.errors import ClientError, SimError

# -- the command table --------------------------------------------------------------------------


@pytest.mark.parametrize("command", commands.COMMANDS, ids=lambda c: c.name)
def test_every_command_resolves_and_documents_its_flags(command: commands.Command) -> None:
    for alias in (command.name, *command.aliases):
        assert commands.CANON[alias] == command.name
    if command.handler is None:
        assert command.name == "help"
        return
    assert callable(cli.handler_of(command))
    text = helptext.usage_text("orbctl", command.name)
    assert f"orbctl {command.usage}" in text
    for f in command.flags:
        left = f"-{f.short}, --{f.long}" if f.short else f"      --{f.long}"  # long-only
        assert left in text and f.help in text
    listed = f"  {command.name:<12}{command.short}" in helptext.root_help("orbctl")
    assert listed == (not command.hidden)


def test_no_alias_is_claimed_twice() -> None:
    names = [a for c in commands.COMMANDS for a in (c.name, *c.aliases)]
    assert len(names) == len(set(names))


def _parse(cmd: str, *argv: str) -> tuple[dict[str, Any], list[str]]:
    return cli.parse(commands.BY_NAME[cmd], list(argv))


def test_pflag_parsing_from_the_table() -> None:
    assert _parse("create", "-u", "bob", "debian", "--arch=arm64", "m1") == (
        {"user": "bob", "arch": "arm64"},
        ["debian", "m1"],
    )
    assert _parse("create", "-ubob", "debian") == ({"user": "bob"}, ["debian"])
    assert _parse("delete", "-af") == ({"all": True, "force": True}, [])
    assert _parse("list", "--quiet=false") == ({"quiet": False}, [])
    assert _parse("push", "-m", "m1", "--", "-file-") == ({"machine": "m1"}, ["-file-"])
    with pytest.raises(ClientError, match="unknown flag: --cpu$"):
        _parse("create", "--cpu", "2", "debian")
    assert _parse("create", "--cpus", "2", "--isolated", "debian") == (
        {"cpus": "2", "isolated": True},
        ["debian"],
    )
    with pytest.raises(ClientError, match="unknown shorthand flag: 'z' in -z"):
        _parse("list", "-z")
    with pytest.raises(ClientError, match="flag needs an argument: --user"):
        _parse("create", "debian", "--user")


@pytest.mark.parametrize(
    ("cmd", "argv", "error"),
    [
        ("create", [], "accepts between 1 and 2 arg(s), received 0"),
        ("create", ["a", "b", "c"], "accepts between 1 and 2 arg(s), received 3"),
        ("info", [], "accepts 1 arg(s), received 0"),
        ("default", ["a", "b"], "accepts at most 1 arg(s), received 2"),
        ("push", [], "requires at least 1 arg(s), only received 0"),
    ],
)
def test_argument_counts_from_the_table(cmd: str, argv: list[str], error: str) -> None:
    with pytest.raises(ClientError) as exc:
        _parse(cmd, *argv)
    assert exc.value.msg == error


def test_run_parsing_stops_at_the_command() -> None:
    assert _parse("run", "-m", "m1", "-u", "root", "ls", "-la", "-m") == (
        {"machine": "m1", "user": "root"},
        ["ls", "-la", "-m"],
    )
    assert _parse("run", "--machine=m1", "-s", "echo hi") == (
        {"machine": "m1", "shell": True},
        ["echo hi"],
    )
    with pytest.raises(ClientError, match="unknown flag --bogus"):
        _parse("run", "--bogus", "true")
    with pytest.raises(ClientError, match="missing value for flag -m"):
        _parse("run", "-m")


def test_adding_a_flag_is_one_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """What docs/simulator.md promises: a Flag in the command's row is parsed and shown."""
    create = commands.BY_NAME["create"]
    monkeypatch.setattr(create, "flags", (*create.flags, flags.Flag("", "gpus", True, "GPUs")))
    assert _parse("create", "--gpus", "4", "debian") == ({"gpus": "4"}, ["debian"])
    assert "      --gpus string       GPUs\n" in helptext.usage_text("orbctl", "create")


# -- fault decisions ----------------------------------------------------------------------------


@pytest.fixture
def fault_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in faults.BEHAVIOUR_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_decide_draws_only_what_the_table_lists(
    fault_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fault_env.setenv("ORBSIM_HANG", "*=1")
    for cmd in ("list", "info", "status", "version", "config", "default"):
        assert faults.decide(tmp_path, cmd).kind is None, cmd
    for cmd, kinds in faults.COMMAND_FAULTS.items():
        if cmd in faults.INSIDE:  # '*' never reaches run/push/pull ...
            assert faults.decide(tmp_path, cmd).kind is None
            fault_env.setenv("ORBSIM_HANG", f"*=1,{cmd}=1")  # ... naming them does
        assert "hang" in kinds and faults.decide(tmp_path, cmd).kind == "hang", cmd
        fault_env.setenv("ORBSIM_HANG", "*=1")
    fault_env.delenv("ORBSIM_HANG")
    fault_env.setenv("ORBSIM_DETACH", "*=1")
    detached = {c for c in faults.COMMAND_FAULTS if faults.decide(tmp_path, c).kind == "detach"}
    assert detached == {c for c, k in faults.COMMAND_FAULTS.items() if "detach" in k}
    assert detached == {"create", "clone"}


def test_permanent_kinds_per_command(fault_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fault_env.setenv("ORBSIM_PERMANENT", "create=image,start=image,stop=notfound,list=notfound")
    first = {c: faults.decide(tmp_path, c).label for c in ("create", "start", "stop", "list")}
    assert first == {"create": "permanent:image", "start": None, "stop": "permanent:notfound",
                     "list": None}  # fmt: skip
    again = {c: faults.decide(tmp_path, c).label for c in ("create", "stop")}
    assert again == {"create": None, "stop": None}  # only the first call


def test_same_seed_same_decisions(fault_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fault_env.setenv("ORBSIM_FAIL", "create=0.5")
    fault_env.setenv("ORBSIM_SEED", "7")
    a = [faults.decide(tmp_path / "a", "create").label for _ in range(20)]
    b = [faults.decide(tmp_path / "b", "create").label for _ in range(20)]
    assert a == b and None in a and any(x and x.startswith("fail:") for x in a)
    fault_env.setenv("ORBSIM_FAULTS_OFF", "1")
    assert faults.decide(tmp_path / "a", "create").kind is None


def test_a_kind_listed_twice_is_drawn_twice_as_often(
    fault_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The reliability suite weights the missing-IP text down this way (one failure in six)."""
    fault_env.setenv("ORBSIM_FAIL", "start=1")
    fault_env.setenv("ORBSIM_FAIL_KINDS", "start=busy|busy|busy|busy|busy|ip")
    labels = [faults.decide(tmp_path, "start").label for _ in range(600)]
    assert set(labels) == {"fail:busy", "fail:ip"}
    assert 50 <= labels.count("fail:ip") <= 150  # ~100 expected; seeded, so exact every run


def test_wedge_admits_n_machines_then_fails_creates_and_later_starts(
    fault_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``ORBSIM_WEDGE_AFTER=2``: the first two machines made (create or clone, once per name)
    work; then creates and starts of later machines draw ``wedge``; clones still succeed."""
    fault_env.setenv("ORBSIM_WEDGE_AFTER", "2")
    label = lambda cmd, name: faults.decide(tmp_path, cmd, name).label  # noqa: E731
    assert label("create", "a") is None
    assert label("create", "a") is None  # a retry of the same machine is no new machine
    assert label("start", "late") is None  # not wedged yet
    assert label("clone", "b") is None  # the 2nd machine
    assert label("clone", "c") is None  # a clone needs no address ...
    assert label("start", "c") == "wedge:ip"  # ... but cannot start
    assert label("create", "d") == "wedge:ip"
    assert (label("start", "b"), label("create", "a")) == (None, None)  # admitted before it
    fault_env.setenv("ORBSIM_FAULTS_OFF", "1")
    assert label("create", "d") is None
    fault_env.delenv("ORBSIM_FAULTS_OFF")
    fault_env.setenv("ORBSIM_WEDGE_DELAY", "0")
    ctx = Ctx(tmp_path, tmp_path / "cache", "orbctl", "create", ["create", "debian", "e"])
    with pytest.raises(SimError) as exc:
        ctx.inject("e")
    assert exc.value.msg == "create 'e': setup: machine didn't start in 30s (missing IP address)"
    assert oplog.entry(ctx, 1)["fault"] == "wedge:ip"


def _ctx(home: Path, cmd: str) -> Ctx:
    return Ctx(home, home / "cache", "orbctl", cmd, [cmd, "m1"])


def test_apply_permanent_and_fail_texts(fault_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fault_env.setenv("ORBSIM_PERMANENT", "create=image,delete=notfound")
    image = {"distro": "ubuntu", "version": "noble", "arch": "arm64", "variant": "default"}
    with pytest.raises(SimError) as exc:
        _ctx(tmp_path, "create").inject("m1", image)
    assert exc.value.msg == "make rootfs: image not found: {ubuntu noble arm64 default}"
    with pytest.raises(SimError) as exc:
        _ctx(tmp_path, "delete").inject("m1")
    assert exc.value.msg == "machine not found: 'm1'"
    fault_env.setenv("ORBSIM_FAIL", "start=1")
    fault_env.setenv("ORBSIM_FAIL_KINDS", "start=busy")
    ctx = _ctx(tmp_path, "start")
    with pytest.raises(SimError) as exc:
        ctx.inject("m1")
    assert exc.value.msg == "cannot start: operations are in progress: clone"
    assert oplog.entry(ctx, 1)["fault"] == "fail:busy"
    ctx.inject("m1")  # once per invocation


HANG = """
import sys
from pathlib import Path
from orbsim.ctx import Ctx
Ctx(Path(sys.argv[1]), Path(sys.argv[1]), "orbctl", "stop", ["m1"]).inject("m1")
print("returned")
"""


def test_apply_hang_never_returns(fault_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fault_env.setenv("ORBSIM_HANG", "stop=1")
    proc = subprocess.Popen([sys.executable, "-c", HANG, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not oplog.read_ops(tmp_path) and time.monotonic() < deadline:
            assert proc.poll() is None, "exited instead of hanging"
            time.sleep(0.05)
        (op,) = oplog.read_ops(tmp_path)
        assert (op["cmd"], op["rc"], op["fault"], op["pid"]) == ("stop", None, "hang", proc.pid)
        time.sleep(0.5)
        assert proc.poll() is None
    finally:
        proc.kill()
        out, _ = proc.communicate()
    assert b"returned" not in out


# -- the state machine --------------------------------------------------------------------------

STATES = ("creating", "starting", "running", "stopping", "stopped", "deleting")
#: op -> state -> "begin" | "done" | "wait" | the refusal's text
EXPECTED: dict[str, dict[str, str]] = {
    "start": {"creating": "cannot transition from creating to starting", "starting": "wait",
              "running": "done", "stopping": "wait", "stopped": "begin",
              "deleting": "cannot transition from deleting to starting"},
    "stop": {"creating": "cannot transition from creating to stopping", "starting": "wait",
             "running": "begin", "stopping": "wait", "stopped": "done",
             "deleting": "cannot transition from deleting to stopping"},
    "delete": {"creating": "cannot transition from creating to deleting", "starting": "wait",
               "running": "begin", "stopping": "wait", "stopped": "begin", "deleting": "wait"},
    "rename": {"creating": "cannot transition from creating to renaming", "starting": "begin",
               "running": "begin", "stopping": "begin", "stopped": "begin",
               "deleting": "cannot transition from deleting to renaming"},
}  # fmt: skip


@pytest.mark.parametrize("op", sorted(EXPECTED))
@pytest.mark.parametrize("st", STATES)
def test_transition_table(op: Any, st: str) -> None:
    want = EXPECTED[op][st]
    rec = {"state": st, "busy": None}
    if want in ("begin", "done", "wait"):
        assert transitions.guard(op, rec) == want
    else:
        with pytest.raises(SimError) as exc:
            transitions.guard(op, rec)
        assert exc.value.msg == want


def test_busy_machines_refuse_all_but_stop() -> None:
    rec = {"state": "running", "busy": {"op": "clone", "pid": 1, "start": 1}}
    for op in ("start", "delete", "rename", "clone", "export"):
        if op == "start":
            rec["state"] = "stopped"
        with pytest.raises(SimError) as exc:
            transitions.guard(op, rec)
        assert exc.value.msg == f"cannot {op}: operations are in progress: clone"
        rec["state"] = "running"
    assert transitions.guard("stop", rec) == "begin"


# -- settling records whose owner died ----------------------------------------------------------

LIVE = {"pid": 4242, "start": 1}
DEAD = {"pid": 4343, "start": 1}


def _rec(mid: str, state: str, **kw: Any) -> dict[str, Any]:
    return {"id": mid, "name": mid.lower(), "state": state, "owner": None, "busy": None,
            "holder": None, "ip4": None, **kw}  # fmt: skip


def test_normalize_settles_dead_reservations(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(S, "alive", lambda ident: ident == LIVE)
    monkeypatch.setattr(S, "kill_ident", lambda ident, sig=9: None)
    st = S.empty_state()
    st["machines"] = {
        "A": _rec("A", "creating", owner=DEAD),  # a killed create: gone
        "B": _rec("B", "creating", owner=LIVE),  # still being made
        "C": _rec("C", "starting", owner=DEAD),  # a killed start, no init: stopped
        "D": _rec("D", "stopping", owner=DEAD, holder=LIVE, ip4="1.2.3.4"),  # still runs
        "E": _rec("E", "running", holder=DEAD, ip4="1.2.3.5"),  # init killed: stopped
        "F": _rec("F", "stopped", busy={"op": "export", **DEAD}),  # a killed export
        "G": _rec("G", "deleting", owner=DEAD),  # a killed (hung) delete: gone
    }
    st["default"] = "A"
    txn = S.Txn(tmp_path, st)
    S.normalize(txn)
    got = {m: (r["state"], r["owner"], r["holder"], r["ip4"], r["busy"])
           for m, r in st["machines"].items()}  # fmt: skip
    assert got == {
        "B": ("creating", LIVE, None, None, None),
        "C": ("stopped", None, None, None, None),
        "D": ("running", None, LIVE, "1.2.3.4", None),
        "E": ("stopped", None, None, None, None),
        "F": ("stopped", None, None, None, None),
    }
    assert sorted(txn.gone) == ["A", "G"]
    assert {"A", "G", "C", "E"} <= set(txn.reap)  # what they left on the host is reaped
    assert st["default"] == "B"  # the first remaining machine by name


# -- machine settings (orbsim/settings.py) --------------------------------------------------------


def test_create_flags_become_the_records_config() -> None:
    from orbsim import settings

    opts = {"cpus": "2", "memory": "1536M", "disk": "64G", "isolated": True,
            "forward-ssh-agent": True}  # fmt: skip
    assert settings.create_config(opts, "me") == {
        "isolated": True,
        "default_username": "me",
        "forward_ssh_agent": True,
        "cpu_limit": 2,
        "memory_limit_mib": 1536,
        "disk_limit_bytes": 64 * 1024**3,
    }
    assert settings.parse_size("memory", "4GiB") == settings.parse_size("memory", "4G") == 4 << 30
    for bad in ({"cpus": "0"}, {"cpus": "1.5"}, {"memory": "4 gigs"}, {"mount": "/a:/b"}):
        with pytest.raises(ClientError):
            settings.create_config(bad, "me")


def test_limits_are_lxc_cgroup_keys_of_the_first_allowed_cpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    from orbsim import settings

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5, 3, 7})
    lines = settings.lxc_limits({"cpu_limit": 2, "memory_limit_mib": 512})
    v2 = any(line.startswith("lxc.cgroup2.") for line in lines)
    prefix = "lxc.cgroup2." if v2 else "lxc.cgroup."
    assert f"{prefix}cpuset.cpus = 3,5" in lines
    memory = "memory.max" if v2 else "memory.limit_in_bytes"
    assert f"{prefix}{memory} = {512 << 20}" in lines
    assert settings.lxc_limits({"isolated": True, "disk_limit_bytes": 1 << 30}) == []
