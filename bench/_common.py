"""Shared plumbing of the benchmarks in ``bench/``: latency model, throw-away simulator homes,
timed pytest runs, the simulator's operation log.

Every benchmark runs on the simulator (``orbsim``) with a latency model that approximates
OrbStack (``LATENCY_DEFAULTS``, documented in ``docs/performance.md``) and prints *ratios* of
times measured in the same run: this machine is noisy and no absolute figure is trusted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orbsim.faults import REALISTIC_LATENCY

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SUITES = BENCH / "suites"
#: The deploy every fresh-machine benchmark provisions: the example role (a service user, an apt
#: package with an index refresh, a templated config, a script).
DEFAULT_DEPLOY = REPO / "examples" / "deploys" / "webapp.py"
IMAGE = "debian:bookworm"

#: Seconds per ``orbctl`` command, added by the simulator on top of its own cost: orbsim's
#: ``ORBSIM_LATENCY=realistic`` preset (one table, so the benchmarks and a user's CI that turns
#: the preset on assume the same OrbStack).  These are assumptions approximating OrbStack 2.x on
#: Apple silicon (docs/orbctl-contract.md has no measured figures): create downloads the image
#: from the CDN every time and waits for IPv4/IPv6 and in-guest setup; clone is a copy-on-write
#: snapshot; start boots a container; run is one RPC.
LATENCY_DEFAULTS: dict[str, float] = dict(REALISTIC_LATENCY)

#: Environment variables never inherited by benchmark subprocesses (a caller's settings would
#: change what is measured).
_DROP_PREFIXES = ("ORBSIM_", "ORBSTACK_", "PYTEST_")
_KEEP = ("ORBSIM_CACHE", "ORBSIM_MIRROR")


def latency_text(model: dict[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in model.items())


def parse_latency(text: str) -> dict[str, float]:
    """``create=15,clone=0.5`` on top of the defaults."""
    model = dict(LATENCY_DEFAULTS)
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--latency: {part!r} is not CMD=SECONDS")
        try:
            model[key.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--latency: {value!r} is not a number") from None
    return model


def add_common_args(ap: argparse.ArgumentParser, *, short_help: str) -> None:
    ap.add_argument("--short", action="store_true", help=short_help)
    ap.add_argument(
        "--scale",
        type=float,
        default=None,
        help="factor on every latency of the model (default 1; --short: 0.1)",
    )
    ap.add_argument(
        "--latency",
        type=parse_latency,
        default=dict(LATENCY_DEFAULTS),
        metavar="CMD=S,...",
        help=f"override parts of the latency model (default {latency_text(LATENCY_DEFAULTS)})",
    )
    ap.add_argument("--keep-home", action="store_true", help="keep the temporary directory")


def orbsim_executable() -> str:
    """The real ``orbsim`` console script (not a pyenv shim), as the plugin's sim backend uses."""
    from pytest_orbstack.options import simulator_executable

    exe = simulator_executable()
    if exe is None:
        raise SystemExit("cannot benchmark: orbsim is not installed (pip install -e .)")
    return exe


@dataclass
class Bench:
    """A benchmark's throw-away root: one fresh simulator home per measured run."""

    latency: dict[str, float]
    scale: float
    keep: bool = False
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="orbstack-bench-")))
    exe: str = field(default_factory=orbsim_executable)
    homes: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Clients made in this process (Orbctl merges os.environ) see only the bench's settings.
        for key in [k for k in os.environ if k.startswith(_DROP_PREFIXES) and k not in _KEEP]:
            del os.environ[key]

    def base_env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES) or k in _KEEP
        }
        env["ORBSIM_LATENCY"] = latency_text(self.latency)
        env["ORBSIM_LATENCY_SCALE"] = f"{self.scale:g}"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def home(self, label: str) -> tuple[Path, dict[str, str]]:
        """A fresh ``ORBSIM_HOME`` and ``ORBSTACK_STATE_DIR`` for one measured run."""
        home = self.root / f"{len(self.homes):02d}-{label}"
        (home / "sim").mkdir(parents=True)
        (home / "state").mkdir()
        self.homes.append(home)
        env = self.base_env()
        env["ORBSIM_HOME"] = str(home / "sim")
        env["ORBSTACK_STATE_DIR"] = str(home / "state")
        return home, env

    def prepare(self) -> None:
        """Build (or validate) the shared base image; not timed."""
        env = self.base_env()
        env["ORBSIM_HOME"] = str(self.root / "prepare")
        proc = subprocess.run(
            [self.exe, "sim-prepare"], env=env, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise SystemExit(f"cannot benchmark: orbsim sim-prepare failed: {proc.stderr.strip()}")
        status = subprocess.run(
            [self.exe, "status"], env=env, capture_output=True, text=True, check=False
        )
        if status.returncode != 0:
            raise SystemExit(f"cannot benchmark: orbsim status: {status.stderr.strip()}")

    def leftovers(self, home: Path) -> list[str]:
        env = {**self.base_env(), "ORBSIM_HOME": str(home / "sim"), "ORBSIM_FAULTS_OFF": "1"}
        proc = subprocess.run(
            [self.exe, "list", "-q"], env=env, capture_output=True, text=True, check=False
        )
        return proc.stdout.split()

    def cleanup(self) -> None:
        for home in self.homes:
            env = {**self.base_env(), "ORBSIM_HOME": str(home / "sim"), "ORBSIM_FAULTS_OFF": "1"}
            subprocess.run(
                [self.exe, "delete", "-a", "-f"], env=env, capture_output=True, check=False
            )
        if self.keep:
            print(f"kept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class PytestRun:
    label: str
    seconds: float
    returncode: int
    output: str
    home: Path
    #: This run's slice of the simulator's operation log (a warm run shares its home).
    ops_before: int = 0
    ops_end: int | None = None
    #: Wall-clock time (``time.time()``) the pytest process was started.
    started_at: float = 0.0

    @property
    def sim_home(self) -> Path:
        return self.home / "sim"

    def ops(self) -> list[dict[str, Any]]:
        from orbsim.oplog import read_ops

        return read_ops(self.sim_home)[self.ops_before : self.ops_end]

    def calls_per_test(self) -> float:
        """Lifecycle ``orbctl`` invocations of the whole run per test: what the machines cost in
        calls (base and template included), leaving out what the tests and the deploy do
        *inside* machines (their ``run``/``push``/``pull``).  The plugin's own in-machine calls
        (the readiness check and the generalize step) count."""
        tests = len(self.bodies()) or 1
        return sum(1 for op in self.ops() if _lifecycle(op)) / tests

    def commands(self) -> Counter[str]:
        return Counter(str(op.get("cmd")) for op in self.ops())

    def count(self, cmd: str, *, ok: bool | None = True) -> int:
        return sum(
            1
            for op in self.ops()
            if op.get("cmd") == cmd and (ok is None or (op.get("rc") == 0) == ok)
        )

    def failed_calls(self) -> Counter[str]:
        """``orbctl`` invocations that exited non-zero, by command (retried or not)."""
        return Counter(str(op.get("cmd")) for op in self.ops() if op.get("rc") != 0)

    @property
    def creations(self) -> int:
        """Machines made: successful ``create`` plus successful ``clone`` invocations."""
        return self.count("create") + self.count("clone")

    def report(self) -> dict[str, Any]:
        path = self.home / "report.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def bodies(self) -> list[float]:
        """Per-test body durations written by ``bench/suites/checks.py``."""
        path = self.home / "bodies.jsonl"
        if not path.exists():
            return []
        return [json.loads(line)["seconds"] for line in path.read_text().splitlines() if line]

    def phases(self) -> tuple[float, float, float] | None:
        """(first test body starts, last test body ends, the run's end) in seconds from the
        pytest process's start: the wait for the first machine, the tests, and the tail (the
        last deletes, worker shutdown, the report)."""
        path = self.home / "bodies.jsonl"
        if not path.exists() or not self.started_at:
            return None
        lines = [json.loads(line) for line in path.read_text().splitlines() if line]
        if not lines or "end" not in lines[0]:
            return None
        first = min(x["end"] - x["seconds"] for x in lines) - self.started_at
        last = max(x["end"] for x in lines) - self.started_at
        return first, last, self.seconds


#: Words only the plugin's own in-machine scripts contain (pytest_orbstack.cloning).
_PLUGIN_SCRIPTS = ("is-system-running", "random-seed")


def _lifecycle(op: dict[str, Any]) -> bool:
    if op.get("cmd") not in ("run", "push", "pull"):
        return True
    args = " ".join(str(a) for a in op.get("args") or [])
    return op.get("cmd") == "run" and any(word in args for word in _PLUGIN_SCRIPTS)


def run_pytest(
    bench: Bench,
    label: str,
    args: list[str],
    *,
    extra_env: dict[str, str] | None = None,
    plugin: bool = True,
    trace: bool = False,
    timeout: float = 3600,
    after: PytestRun | None = None,
) -> PytestRun:
    """Run ``python -m pytest ARGS`` in a fresh simulator home; time it (wall clock).

    ``trace``: the per-test trace of ``bench/suites/conftest.py`` into ``HOME/trace.json``.
    ``after``: run in that earlier run's home instead (a warm run after a cold one); its
    operation log and report are kept apart by offset and file name.
    """
    if after is None:
        home, env = bench.home(label)
    else:
        home = after.home
        env = {**bench.base_env(), "ORBSIM_HOME": str(home / "sim")}
        env["ORBSTACK_STATE_DIR"] = str(home / "state")
        home = home / label
        home.mkdir()
        (home / "sim").symlink_to(after.sim_home)
    env.update(extra_env or {})
    env["BENCH_BODY_LOG"] = str(home / "bodies.jsonl")
    env["BENCH_LIFECYCLE"] = str(home / "lifecycle.json")
    if trace:
        env["BENCH_TRACE"] = str(home / "trace.json")
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    if plugin:
        argv += [
            "--orbstack-backend=sim",
            "--orbstack-required",
            f"--orbstack-report={home / 'report.json'}",
        ]
    else:
        argv += ["-p", "no:orbstack"]
    from orbsim.oplog import read_ops

    before = len(read_ops(home / "sim"))
    started_at = time.time()
    started = time.perf_counter()
    proc = subprocess.run(
        argv,
        env=env,
        cwd=SUITES,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    seconds = time.perf_counter() - started
    output = proc.stdout + proc.stderr
    run = PytestRun(
        label,
        seconds,
        proc.returncode,
        output,
        home,
        before,
        len(read_ops(home / "sim")),
        started_at,
    )
    left = bench.leftovers(home)
    if proc.returncode != 0:
        tail = "\n".join(run.output.strip().splitlines()[-40:])
        raise SystemExit(f"{label}: pytest exited {proc.returncode}:\n{tail}")
    if left:
        print(f"  note: {label}: machines left after the run: {', '.join(left)}")
    return run


def option_accepted(bench: Bench, option: str) -> bool:
    """Does the plugin accept ``option`` (a usage error means it does not)?"""
    home, env = bench.home("probe-option")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", option,
         "--orbstack-backend=sim", "session_plugin"],
        env={**env, "BENCH_TESTS": "1"},
        cwd=SUITES,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    return proc.returncode == 0


def timed(func: Any, *args: Any, **kwargs: Any) -> float:
    started = time.perf_counter()
    func(*args, **kwargs)
    return time.perf_counter() - started


def describe_model(bench: Bench) -> str:
    return f"latency model (s): {latency_text(bench.latency)}; scale {bench.scale:g}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"
