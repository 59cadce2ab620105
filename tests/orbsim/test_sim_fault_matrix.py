"""Every (command x fault kind) pair orbsim draws really happens, as a client sees it.

The pairs come from orbsim's own table (``faults.COMMAND_FAULTS``): a pair added there without a
scene or an environment here fails (``scene``/``_env`` raise).  Each pair is forced (probability
1, or the command's first invocation for ``permanent``) on a real machine:

* ``hang``: the process does not exit until it is killed: the op log gets its line (``rc``
  null: it never returned) while the process is still alive, and it is still alive a second
  later; after the kill the machine is what a killed call leaves (nothing was done).
* ``fail``: exit 1 with the transient text (the plugin's classifier: ``TransientError``);
  inside a machine (run/push/pull) the server's text is only in the op log (no terminal).
* ``permanent``: exit 1 with the permanent text (``PermanentError``), nothing done.
* ``detach`` (create/clone): the client exits 124 and the machine appears later; its server
  logs the background completion.
* ``wedge`` (create/start, ``ORBSIM_WEDGE_AFTER=0``: wedged from the start): exit 1 with the
  2.2.3 missing-IP text after the wedge delay (``TransientError`` by text: the plugin's wedge
  detector, not the classifier, ends the retries), nothing made or started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orbsim import faults
from pytest_orbstack.errors import PermanentError, TransientError, classify
from tests.orbsim.conftest import Sim, SimFactory

PAIRS = [(cmd, kind) for cmd, kinds in faults.COMMAND_FAULTS.items() for kind in kinds]
SERVER_PREFIX = "[-32098] "


@dataclass
class World:
    sim: Sim
    base: str  # a running machine every scene acts on (or clones)
    archive: Path  # an export of it
    tmp: Path


@dataclass
class Scene:
    argv: list[str]
    subject: str  # the machine named in texts
    check: Callable[[], None]  # after a call that did nothing: what the machine must be


@pytest.fixture(scope="module")
def world(sim_factory: SimFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    sim = sim_factory.new()
    tmp = tmp_path_factory.mktemp("fault-matrix")
    base = sim.create("fm-base")
    archive = tmp / "base.tar.zst"
    sim.ok("export", base, str(archive))
    (tmp / "pushed.txt").write_text("pushed\n")
    yield World(sim, base, archive, tmp)
    sim("delete", "-a", "-f", timeout=300)


def _running(w: World) -> Callable[[], None]:
    def check() -> None:
        assert w.sim.wait_state(w.base, "running", 30) == "running"

    return check


def _gone(w: World, name: str) -> Callable[[], None]:
    def check() -> None:
        assert w.sim.wait_state(name, None, 60) is None, f"{name} should not exist"

    return check


def scene(w: World, cmd: str, kind: str) -> Scene:
    """Set the stage for ``cmd`` (with faults off) and say what a call that did nothing leaves."""
    sim, base = w.sim, w.base
    new = sim.name(f"fm-{cmd}")
    if cmd == "create":
        return Scene(["create", "debian", new], new, _gone(w, new))
    if cmd == "clone":

        def cloned() -> None:
            _gone(w, new)()
            _running(w)()
            sim.ok("stop", base)  # the source is not left busy by the killed clone
            sim.ok("start", base)

        return Scene(["clone", base, new], base, cloned)
    if cmd == "start":
        sim.ok("stop", base)

        def stopped() -> None:
            assert sim.wait_state(base, "stopped", 30) == "stopped"
            sim.ok("start", base)

        return Scene(["start", base], base, stopped)
    if cmd in ("stop", "restart"):
        return Scene([cmd, base], base, _running(w))
    if cmd == "delete":
        victim = sim.name("fm-victim")
        sim.ok("clone", base, victim)

        def kept() -> None:
            if kind == "hang":  # a killed delete's reservation is void: the machine is gone
                _gone(w, victim)()
            else:
                assert sim.state(victim) == "stopped"
                sim.ok("delete", "-f", victim)

        return Scene(["delete", "-f", victim], victim, kept)
    if cmd == "rename":

        def same_name() -> None:
            _running(w)()
            assert sim.state(new) is None

        return Scene(["rename", base, new], base, same_name)
    if cmd == "export":
        out = w.tmp / f"{new}.tar.zst"

        def no_file() -> None:
            assert not out.exists()
            _running(w)()
            assert not list(w.tmp.glob(f"{new}*"))  # no partial archive either

        return Scene(["export", base, str(out)], base, no_file)
    if cmd == "import":
        return Scene(["import", str(w.archive), "-n", new], new, _gone(w, new))
    if cmd == "run":
        return Scene(["run", "-m", base, "true"], base, _running(w))
    if cmd == "push":
        src = str(w.tmp / "pushed.txt")
        return Scene(["push", "-m", base, src, f"/tmp/{new}"], base, _running(w))
    if cmd == "pull":
        dest = w.tmp / f"{new}.pulled"

        def not_pulled() -> None:
            assert not dest.exists()
            _running(w)()

        return Scene(["pull", "-m", base, "/etc/hostname", str(dest)], base, not_pulled)
    raise AssertionError(f"no scene for {cmd!r}: add one to scene()")


def _env(w: World, cmd: str, kind: str) -> dict[str, str]:
    env = dict(w.sim.env)
    if kind == "hang":
        env["ORBSIM_HANG"] = f"{cmd}=1"
    elif kind == "fail":
        env["ORBSIM_FAIL"] = f"{cmd}=1"
        env["ORBSIM_FAIL_KINDS"] = f"{cmd}={faults.default_kinds(cmd)[0]}"
    elif kind == "permanent":
        env["ORBSIM_PERMANENT"] = f"{cmd}={'image' if cmd == 'create' else 'notfound'}"
    elif kind == "wedge":
        env["ORBSIM_WEDGE_AFTER"] = "0"  # no machine admitted: this one meets the wedge
        env["ORBSIM_WEDGE_DELAY"] = "0.5"
    elif kind == "detach":
        env["ORBSIM_DETACH"] = f"{cmd}=1"
        env["ORBSIM_DETACH_MODE"] = "exit124"
        env["ORBSIM_LATENCY"] = f"{cmd}=1"
    else:
        raise AssertionError(f"no environment for fault kind {kind!r}: add one to _env()")
    return env


def _ops_of(sim: Sim, pid: int) -> list[dict[str, Any]]:
    return [op for op in sim.ops() if op.get("pid") == pid]


@pytest.mark.parametrize(("cmd", "kind"), PAIRS, ids=[f"{c}-{k}" for c, k in PAIRS])
def test_fault_happens(world: World, cmd: str, kind: str) -> None:
    sim = world.sim
    sc = scene(world, cmd, kind)
    env = _env(world, cmd, kind)
    argv = [sim.exe(), *sc.argv]
    inside = cmd in faults.INSIDE
    if kind == "hang":
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while not _ops_of(sim, proc.pid) and time.monotonic() < deadline:
                assert proc.poll() is None, (
                    f"orbsim {' '.join(sc.argv)} exited {proc.returncode} instead of hanging: "
                    f"{proc.communicate()}"
                )
                time.sleep(0.1)
            (op,) = _ops_of(sim, proc.pid)
            assert (op["rc"], op["fault"]) == (None, "hang"), op
            time.sleep(1.0)
            assert proc.poll() is None, f"exited {proc.returncode} after logging a hang"
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        sc.check()
        assert len(_ops_of(sim, proc.pid)) == 1  # the kill wrote no line: a hang has no rc
        return
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    out, err = proc.communicate(timeout=300)
    res = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    if kind == "detach":
        assert res.returncode == 124, res
        want = "running" if cmd == "create" else "stopped"
        name = sc.argv[-1]
        assert sim.wait_state(name, want, 120) == want
        deadline = time.monotonic() + 30
        while not _ops_of(sim, proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)  # the server logs once the background work is done
        (op,) = _ops_of(sim, proc.pid)
        assert (op["rc"], op["fault"], op["completed"]) == (124, "detach", True), op
        sim.ok("delete", "-f", name)
        return
    (op,) = _ops_of(sim, proc.pid)
    assert res.returncode == 1, res
    if kind == "fail":
        detail = faults.default_kinds(cmd)[0]
        text = faults.fail_message(cmd, detail, sc.subject)
        assert op["fault"] == f"fail:{detail}"
        want_class: type = TransientError
    elif kind == "wedge":
        text = f"{cmd} '{sc.subject}': setup: machine didn't start in 30s (missing IP address)"
        assert op["fault"] == "wedge:ip"
        want_class = TransientError
    else:
        assert kind == "permanent"
        assert op["fault"] == f"permanent:{'image' if cmd == 'create' else 'notfound'}"
        text = (
            f"create '{sc.subject}': make rootfs: image not found: {{"
            if cmd == "create"
            else f"machine not found: '{sc.subject}'"
        )
        want_class = PermanentError
    if inside:  # the server's text goes into the session only with a terminal (contract §1)
        assert res.stderr == ""
        assert str(op.get("error", "")).startswith(text), op
        shown = SERVER_PREFIX + op["error"]
    else:
        assert res.stderr.startswith(SERVER_PREFIX + text), res.stderr
        shown = res.stderr
    assert issubclass(classify(shown, 1), want_class), (shown, classify(shown, 1))
    sc.check()
