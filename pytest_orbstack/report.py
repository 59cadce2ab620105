"""What the run cost: per-machine and per-test timings, the events of the run (what happened
when, where), the terminal summary, the JSON report, and merging reports (xdist workers; CI
shards).

Each process keeps a :class:`Recorder`.  Under xdist every worker writes its recorder to the
run's shared directory at the end, and the controller merges them for the summary.  The report's
format is documented in docs/report.md (:data:`FORMAT` is its version).

``python -m pytest_orbstack.report timeline|summary|merge REPORT.json ...`` works on written
reports (several shards' at once): see :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from pytest_orbstack.errors import ReportError
from pytest_orbstack.vocabulary import Isolation, Role

PHASES = ("create", "clone", "start", "ready", "deploy", "delete")
#: The JSON report's format: 1 had no ``format`` key and no events; 2 adds ``events``,
#: ``started``/``finished`` and ``runs`` (docs/report.md).
FORMAT = 2
#: What an event is: a machine's lifecycle phase, a test body, a test's wait for its machines,
#: a deploy a test ran.
EventKind = Literal["phase", "test", "wait", "deploy"]
EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)


@dataclass
class Event:
    """One span of the run, in wall-clock seconds (``time.time()``, comparable across
    processes and, roughly, across CI runners)."""

    kind: EventKind
    start: float
    end: float
    #: The process that did it: ``main`` (the only process, or the xdist controller), ``gw0``...
    worker: str
    #: ``main`` for the thread that runs tests, else the background thread's name.
    thread: str
    machines: list[str] = field(default_factory=list)
    phase: str | None = None  # kind "phase": create, clone, start, ready, deploy, stop, delete
    nodeid: str | None = None  # kinds "test", "wait", "deploy"
    #: test: pytest's outcome (passed, failed, skipped); phase and deploy: ok, failed.
    outcome: str | None = None
    target: str | None = None  # kind "deploy": the deploy file
    #: Which run (CI shard) it belongs to; set when reports of several runs are merged.
    run: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if v is not None}
        data["start"], data["end"] = round(self.start, 3), round(self.end, 3)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


def _thread() -> str:
    current = threading.current_thread()
    return "main" if current is threading.main_thread() else current.name


@dataclass
class MachineStats:
    name: str
    image: str
    isolation: str
    kind: str
    tests: int = 0
    phases: dict[str, float] = field(default_factory=dict)
    outcome: str = "in use"  # created | reused | deleted | kept | failed
    reused: bool = False
    error: str | None = None
    #: The deploy file that provisions it (templates, provisioned session machines).
    deploy: str | None = None
    #: What the machine runs when it is not the image asked for (``debian bookworm``).
    actual_image: str | None = None

    @property
    def total(self) -> float:
        return sum(self.phases.values())


@dataclass
class DeployStats:
    """One deploy run from inside a test (``Machine.deploy``, ``assert_idempotent``,
    ``orb_deploy``)."""

    machine: str
    target: str
    seconds: float
    ok: bool
    changed: bool


@dataclass
class TestStats:
    nodeid: str
    machines: list[str] = field(default_factory=list)
    #: Seconds the test waited for its machines (create or clone, start, ready; and whatever
    #: those waited for: a template being provisioned, a clone source, a create slot).
    waited: float = 0.0
    deploys: list[DeployStats] = field(default_factory=list)
    #: The test's topology (``orb_inventory``): group -> machine names.
    groups: dict[str, list[str]] = field(default_factory=dict)
    #: How the test got each machine: ``session``, ``module``, ``function`` (``orb_vm``'s
    #: isolation) or ``factory``.
    roles: dict[str, str] = field(default_factory=dict)

    @property
    def deploy_seconds(self) -> float:
        return sum(d.seconds for d in self.deploys)


class Recorder:
    def __init__(self, worker: str = "main") -> None:
        self.worker = worker
        self.events: list[Event] = []
        #: Runs whose reports were merged in (CI shards), in order.
        self.runs: list[str] = []
        self.run_finished: float | None = None
        self.machines: dict[str, MachineStats] = {}
        self.tests: dict[str, TestStats] = {}
        self.orbctl_calls: dict[str, int] = {}
        #: Wall-clock times (``time.time()``, comparable across processes): when the run
        #: started, and when the first test that uses a machine began its body.
        self.run_started: float | None = None
        self.first_test: float | None = None
        #: Seconds it took to start a stopped OrbStack for this run (``None``: it was running).
        self.orbstack_start: float | None = None

    def orbstack_started(self, seconds: float) -> None:
        self.orbstack_start = seconds

    def test_started(self) -> None:
        if self.first_test is None:
            self.first_test = time.time()

    def event(self, kind: EventKind, start: float, end: float, **fields: Any) -> Event:
        event = Event(kind, start, end, self.worker, _thread(), **fields)
        self.events.append(event)  # list.append is atomic: background threads record too
        return event

    def test_body(
        self, nodeid: str, start: float, end: float, machines: Sequence[str], outcome: str
    ) -> None:
        """A test body that used machines ran from ``start`` to ``end`` (pytest's call times)."""
        self.event("test", start, end, machines=list(machines), nodeid=nodeid, outcome=outcome)

    @property
    def time_to_first_test(self) -> float | None:
        if self.run_started is None or self.first_test is None:
            return None
        return max(0.0, self.first_test - self.run_started)

    def machine(
        self, name: str, image: str, isolation: Isolation, kind: Role, deploy: str | None = None
    ) -> MachineStats:
        stats = self.machines.get(name)
        if stats is None:
            label = Path(deploy).name if deploy else None
            stats = self.machines[name] = MachineStats(name, image, isolation, kind, deploy=label)
        return stats

    @contextmanager
    def phase(self, name: str, phase: str) -> Iterator[None]:
        with self.shared_phase([name], phase):
            yield

    @contextmanager
    def shared_phase(self, names: Sequence[str], phase: str) -> Iterator[None]:
        """Time one step done for one machine, or for several at once (a batched delete, a
        topology's one deploy: each gets an equal share of the time, so the run's total counts
        it once, and the event names them all)."""
        wall, started = time.time(), time.monotonic()
        outcome = "failed"
        try:
            yield
            outcome = "ok"
        finally:
            elapsed = time.monotonic() - started
            share = elapsed / max(1, len(names))
            known = [name for name in names if name in self.machines]
            for name in known:
                stats = self.machines[name]
                stats.phases[phase] = stats.phases.get(phase, 0.0) + share
            if known:
                self.event(
                    "phase", wall, wall + elapsed, machines=known, phase=phase, outcome=outcome
                )

    def served(self, name: str, nodeid: str, waited: float, role: str | None = None) -> None:
        """``nodeid`` was given machine ``name`` (as ``role``) after waiting ``waited``
        seconds, just now."""
        if name in self.machines:
            self.machines[name].tests += 1
        test = self.tests.setdefault(nodeid, TestStats(nodeid))
        test.machines.append(name)
        if role is not None:
            test.roles[name] = role
        test.waited += waited
        now = time.time()
        self.event("wait", now - waited, now, machines=[name], nodeid=nodeid)

    def topology(self, nodeid: str, groups: dict[str, list[str]]) -> None:
        """A test was given machines in groups (``orb_inventory``)."""
        self.tests.setdefault(nodeid, TestStats(nodeid)).groups = dict(groups)

    def deployed(self, nodeid: str, deploy: DeployStats) -> None:
        """A test ran a deploy, which just ended (its time is the test's, not a machine's
        lifecycle)."""
        self.tests.setdefault(nodeid, TestStats(nodeid)).deploys.append(deploy)
        now = time.time()
        self.event(
            "deploy",
            now - deploy.seconds,
            now,
            machines=[deploy.machine],
            nodeid=nodeid,
            target=deploy.target,
            outcome="ok" if deploy.ok else "failed",
        )

    def junit_properties(self, nodeid: str) -> list[tuple[str, str]]:
        """What ``nodeid`` had of machines, as JUnit XML ``<property>`` pairs: per machine its
        name, image (and the image it really is), role; the seconds it waited; per deploy it
        ran, the file, the outcome and the seconds."""
        test = self.tests.get(nodeid)
        if test is None:
            return []
        props: list[tuple[str, str]] = []
        for i, name in enumerate(dict.fromkeys(test.machines)):
            stats = self.machines.get(name)
            props.append((f"orbstack.machine.{i}.name", name))
            if stats is not None:
                props.append((f"orbstack.machine.{i}.image", stats.image))
                if stats.actual_image:
                    props.append((f"orbstack.machine.{i}.actual_image", stats.actual_image))
            role = test.roles.get(name) or (stats.kind if stats is not None else None)
            if role:
                props.append((f"orbstack.machine.{i}.role", role))

        props.append(("orbstack.waited", f"{test.waited:.3f}"))
        for i, deploy in enumerate(test.deploys):
            outcome = ("changed" if deploy.changed else "ok") if deploy.ok else "failed"
            props += [
                (f"orbstack.deploy.{i}.file", deploy.target),
                (f"orbstack.deploy.{i}.machine", deploy.machine),
                (f"orbstack.deploy.{i}.outcome", outcome),
                (f"orbstack.deploy.{i}.seconds", f"{deploy.seconds:.3f}"),
            ]
        return props

    def count_call(self, argv: Sequence[str], rc: int | None, seconds: float) -> None:
        cmd = argv[1] if len(argv) > 1 else "?"
        self.orbctl_calls[cmd] = self.orbctl_calls.get(cmd, 0) + 1

    def outcome(self, name: str, outcome: str) -> None:
        if name in self.machines:
            self.machines[name].outcome = outcome

    # -- serialisation (xdist workers -> controller) -------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "started": self.run_started,
            "finished": self.run_finished,
            "runs": self.runs,
            "events": [e.to_json() for e in sorted(self.events, key=lambda e: e.start)],
            "machines": [asdict(m) for m in self.machines.values()],
            "tests": [
                {**asdict(t), "deploy_seconds": round(t.deploy_seconds, 3)}
                for t in self.tests.values()
            ],
            "orbctl_calls": self.orbctl_calls,
            "first_test": self.first_test,
            "time_to_first_test": self.time_to_first_test,
            "orbstack_start": self.orbstack_start,
        }

    def merge(self, data: dict[str, Any], *, run: str | None = None) -> None:
        """Add a worker's fragment (same run), or with ``run`` another run's report (a CI
        shard: its events are tagged with it)."""
        for e in data.get("events", []):
            event = Event.from_json(e)
            event.run = event.run or run
            self.events.append(event)
        for theirs_run in [*data.get("runs", []), *([run] if run else [])]:
            if theirs_run not in self.runs:
                self.runs.append(theirs_run)
        started, finished = data.get("started"), data.get("finished")
        if started is not None:
            self.run_started = min(float(started), self.run_started or float(started))
        if finished is not None:
            self.run_finished = max(float(finished), self.run_finished or float(finished))
        for m in data.get("machines", []):
            mine = self.machines.get(m["name"])
            if mine is None:
                self.machines[m["name"]] = MachineStats(**m)
                continue
            mine.tests += m["tests"]
            mine.reused = mine.reused or bool(m.get("reused"))
            for phase, secs in m["phases"].items():
                mine.phases[phase] = mine.phases.get(phase, 0.0) + secs
            if m["outcome"] not in ("in use", "created"):
                mine.outcome = m["outcome"]
        for t in data.get("tests", []):
            fields = {k: v for k, v in t.items() if k != "deploy_seconds"}  # derived
            fields["deploys"] = [DeployStats(**d) for d in t.get("deploys", [])]
            self.tests.setdefault(t["nodeid"], TestStats(**fields))
        for cmd, n in data.get("orbctl_calls", {}).items():
            self.orbctl_calls[cmd] = self.orbctl_calls.get(cmd, 0) + n
        if data.get("orbstack_start") is not None:
            self.orbstack_start = max(self.orbstack_start or 0.0, float(data["orbstack_start"]))
        theirs = data.get("first_test")
        if theirs is not None and (self.first_test is None or theirs < self.first_test):
            self.first_test = float(theirs)


def summary_lines(rec: Recorder, *, verbose: bool = False) -> list[str]:
    """The terminal summary table."""
    started = (
        [f"OrbStack was stopped: started it (orbctl start) in {rec.orbstack_start:.1f}s"]
        if rec.orbstack_start is not None
        else []
    )
    if not rec.machines:
        return started
    header = ("machine", "image", "isolation", "deploy", "tests", *PHASES, "outcome")
    rows: list[tuple[str, ...]] = [header]
    for m in sorted(rec.machines.values(), key=lambda m: m.name):
        rows.append(
            (
                m.name,
                m.image + (f" (is {m.actual_image})" if m.actual_image else ""),
                m.kind if m.kind in ("base", "template", "replica") else m.isolation,
                m.deploy or "-",
                str(m.tests),
                *(f"{m.phases[p]:.1f}" if p in m.phases else "-" for p in PHASES),
                m.outcome + (" (reused)" if m.reused and m.outcome != "reused" else ""),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    created = sum(1 for m in rec.machines.values() if m.kind != "template" and not m.reused)
    reused = sum(1 for m in rec.machines.values() if m.reused)
    deleted = sum(1 for m in rec.machines.values() if m.outcome == "deleted")
    total = sum(m.total for m in rec.machines.values())
    waits = [t.waited for t in rec.tests.values()]
    deploys = [d for t in rec.tests.values() for d in t.deploys]
    lines.append(
        f"{len(rec.machines)} machine(s): {created} created, {reused} reused, {deleted} deleted; "
        f"{total:.1f}s spent in machine lifecycle; "
        f"tests waited {sum(waits):.1f}s for machines"
        + (f" (max {max(waits):.1f}s)" if waits else "")
        + (
            f"; {len(deploys)} deploy(s) in tests took {sum(d.seconds for d in deploys):.1f}s"
            if deploys
            else ""
        )
    )
    for m in rec.machines.values():
        if m.actual_image:
            lines.append(f"{m.name} is not the image asked for: {m.image} -> {m.actual_image}")
    lines.extend(topology_lines(rec))
    lines.extend(started)
    if rec.time_to_first_test is not None:
        lines.append(f"time to first test: {rec.time_to_first_test:.1f}s")
    kept = [m for m in rec.machines.values() if m.outcome == "kept"]
    for m in kept:
        lines.append(f"kept {m.name}: log in with `orb -m {m.name}` or `ssh {m.name}@orb`")
    if verbose and rec.tests:
        lines.append("per test: waited for machines, deploys (s):")
        busiest = sorted(rec.tests.values(), key=lambda t: -(t.waited + t.deploy_seconds))
        for t in busiest[:20]:
            lines.append(f"  {t.waited:7.2f}  {t.deploy_seconds:7.2f}  {t.nodeid}")
    return lines


def topology_lines(rec: Recorder) -> list[str]:
    """One line per topology: its groups' machines and how many tests it served."""
    served: dict[str, list[str]] = {}
    for t in rec.tests.values():
        if t.groups:
            text = " ".join(f"{g}=[{', '.join(ms)}]" for g, ms in t.groups.items())
            served.setdefault(text, []).append(t.nodeid)
    return [f"inventory {text}: {len(tests)} test(s)" for text, tests in served.items()]


def write_json(path: Path, rec: Recorder, extra: dict[str, Any] | None = None) -> None:
    data = {**rec.to_json(), **(extra or {})}
    _write(path, json.dumps(data, indent=2, sort_keys=True))


def write_timeline(path: Path, rec: Recorder, extra: dict[str, Any] | None = None) -> None:
    """The run's timeline picture (:mod:`pytest_orbstack.timeline`), one HTML file."""
    from pytest_orbstack.timeline import render

    _write(path, render({**rec.to_json(), **(extra or {})}, summary_lines(rec, verbose=True)))


def _write(path: Path, text: str) -> None:
    """Atomically: a reader (a CI upload step, a browser) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_reports(paths: Sequence[Path]) -> Recorder:
    """Merge written reports (a run's, or several CI shards') into one recorder; each report's
    events are tagged with its run id."""
    rec = Recorder()
    seen: set[str] = set()
    for i, path in enumerate(paths):
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ReportError(f"{path}: not a readable JSON report ({exc})") from None
        if not isinstance(data, dict) or "machines" not in data:
            raise ReportError(f"{path}: not a pytest-orbstack report (no 'machines')")
        if int(data.get("format", 1)) < 2:
            raise ReportError(
                f"{path}: report format {data.get('format', 1)} has no events; "
                f"write it with this version of pytest-orbstack (format {FORMAT})"
            )
        run = str(data.get("run_id") or f"report-{i + 1}")
        if run in seen:
            raise ReportError(f"{path}: run {run} was given twice")
        seen.add(run)
        rec.merge(data, run=run)
    return rec


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pytest_orbstack.report {timeline,summary,merge} REPORT.json [MORE.json ...]``:
    the timeline picture, the terminal summary, or one merged report, of one run's report or
    several CI shards' reports together."""
    parser = argparse.ArgumentParser(
        prog="python -m pytest_orbstack.report", description=main.__doc__
    )
    parser.add_argument("command", choices=("timeline", "summary", "merge"))
    parser.add_argument("reports", nargs="+", type=Path, metavar="REPORT.json")
    parser.add_argument("-o", "--output", type=Path, help="where to write (timeline, merge)")
    args = parser.parse_args(argv)
    if args.command != "summary" and args.output is None:
        parser.error(f"{args.command} needs -o PATH")
    try:
        rec = load_reports(args.reports)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "timeline":
        write_timeline(args.output, rec)
    elif args.command == "merge":
        write_json(args.output, rec)
    print("\n".join(summary_lines(rec, verbose=True)) or "no machines in the report(s)")
    if args.output is not None:
        print(f"wrote {args.output}")
    return 0


__all__ = [
    "EVENT_KINDS",
    "FORMAT",
    "PHASES",
    "Event",
    "EventKind",
    "ReportError",
    "DeployStats",
    "MachineStats",
    "Recorder",
    "TestStats",
    "load_reports",
    "main",
    "summary_lines",
    "write_json",
    "write_timeline",
]


if __name__ == "__main__":
    raise SystemExit(main())
