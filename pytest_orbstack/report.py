"""What the run cost: per-machine and per-test timings, the terminal summary, the JSON report.

Each process keeps a :class:`Recorder`.  Under xdist every worker writes its recorder to the
run's shared directory at the end, and the controller merges them for the summary.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PHASES = ("create", "clone", "start", "ready", "deploy", "delete")


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

    @property
    def deploy_seconds(self) -> float:
        return sum(d.seconds for d in self.deploys)


class Recorder:
    def __init__(self) -> None:
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

    @property
    def time_to_first_test(self) -> float | None:
        if self.run_started is None or self.first_test is None:
            return None
        return max(0.0, self.first_test - self.run_started)

    def machine(
        self, name: str, image: str, isolation: str, kind: str, deploy: str | None = None
    ) -> MachineStats:
        stats = self.machines.get(name)
        if stats is None:
            label = Path(deploy).name if deploy else None
            stats = self.machines[name] = MachineStats(name, image, isolation, kind, deploy=label)
        return stats

    @contextmanager
    def phase(self, name: str, phase: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            stats = self.machines.get(name)
            if stats is not None:
                stats.phases[phase] = stats.phases.get(phase, 0.0) + time.monotonic() - started

    @contextmanager
    def shared_phase(self, names: Sequence[str], phase: str) -> Iterator[None]:
        """Time one step done for several machines at once (a batched delete): each gets an
        equal share."""
        started = time.monotonic()
        try:
            yield
        finally:
            share = (time.monotonic() - started) / max(1, len(names))
            for name in names:
                stats = self.machines.get(name)
                if stats is not None:
                    stats.phases[phase] = stats.phases.get(phase, 0.0) + share

    def served(self, name: str, nodeid: str, waited: float) -> None:
        if name in self.machines:
            self.machines[name].tests += 1
        test = self.tests.setdefault(nodeid, TestStats(nodeid))
        test.machines.append(name)
        test.waited += waited

    def topology(self, nodeid: str, groups: dict[str, list[str]]) -> None:
        """A test was given machines in groups (``orb_inventory``)."""
        self.tests.setdefault(nodeid, TestStats(nodeid)).groups = dict(groups)

    def deployed(self, nodeid: str, deploy: DeployStats) -> None:
        """A test ran a deploy (its time is the test's, not a machine's lifecycle)."""
        self.tests.setdefault(nodeid, TestStats(nodeid)).deploys.append(deploy)

    def count_call(self, argv: Sequence[str], rc: int | None, seconds: float) -> None:
        cmd = argv[1] if len(argv) > 1 else "?"
        self.orbctl_calls[cmd] = self.orbctl_calls.get(cmd, 0) + 1

    def outcome(self, name: str, outcome: str) -> None:
        if name in self.machines:
            self.machines[name].outcome = outcome

    # -- serialisation (xdist workers -> controller) -------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
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

    def merge(self, data: dict[str, Any]) -> None:
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
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


def failure_section(name: str, facts: Iterable[str], commands: Iterable[str], log_tail: str) -> str:
    lines = [f"machine {name}", *(f"  {f}" for f in facts)]
    cmds = list(commands)
    if cmds:
        lines.append("last commands:")
        lines += [f"  {c}" for c in cmds]
    if log_tail.strip():
        lines.append("console log (tail):")
        lines += [f"  {line}" for line in log_tail.strip().splitlines()[-20:]]
    return "\n".join(lines)


__all__ = [
    "PHASES",
    "DeployStats",
    "MachineStats",
    "Recorder",
    "TestStats",
    "failure_section",
    "summary_lines",
    "write_json",
]
