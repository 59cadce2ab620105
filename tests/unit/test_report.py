"""What the run cost (report.py ``Recorder``): phase times, tests served, the merge of xdist
workers' fragments, the terminal summary and the JSON report.

Time is a fake clock here, so every figure is exact and nothing depends on the machine's speed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_orbstack import report
from pytest_orbstack.report import DeployStats, Recorder, summary_lines, write_json


class Clock:
    """Stands in for the ``time`` module inside report.py."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:  # wall clock: the same fake time, offset as real clocks are
        return self.now + 1_700_000_000.0

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(report, "time", fake)
    return fake


def roundtrip(rec: Recorder) -> dict[str, Any]:
    """A worker's fragment as the controller reads it: through JSON."""
    result: dict[str, Any] = json.loads(json.dumps(rec.to_json()))
    return result


def counts_line(lines: list[str]) -> str:
    found = [line for line in lines if " machine(s): " in line]
    assert len(found) == 1, lines
    return found[0]


def row(lines: list[str], name: str) -> list[str]:
    found = [line.split() for line in lines if line.split()[:1] == [name]]
    assert len(found) == 1, lines
    return found[0]


# -- phases ------------------------------------------------------------------------------------


def test_phase_times_accumulate(clock: Clock) -> None:
    rec = Recorder()
    rec.machine("m", "debian", "function", "function")
    with rec.phase("m", "create"):
        clock.advance(2.0)
    with rec.phase("m", "start"):
        clock.advance(0.5)
    with rec.phase("m", "create"):  # a retried create adds up
        clock.advance(3.0)
    stats = rec.machines["m"]
    assert stats.phases == {"create": 5.0, "start": 0.5}
    assert stats.total == 5.5


def test_phase_is_recorded_when_the_step_fails(clock: Clock) -> None:
    rec = Recorder()
    rec.machine("m", "debian", "function", "function")

    def failing_step() -> None:
        with rec.phase("m", "ready"):
            clock.advance(4.0)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing_step()
    assert rec.machines["m"].phases == {"ready": 4.0}


def test_phase_of_an_unknown_machine_is_ignored(clock: Clock) -> None:
    rec = Recorder()
    with rec.phase("ghost", "delete"):
        clock.advance(1.0)
    assert rec.machines == {}


def test_shared_phase_splits_equally(clock: Clock) -> None:
    rec = Recorder()
    for name in ("a", "b", "c"):
        rec.machine(name, "debian", "function", "function")
    with rec.phase("a", "delete"):
        clock.advance(1.0)
    with rec.shared_phase(["a", "b", "c"], "delete"):  # one batched delete of three
        clock.advance(6.0)
    assert rec.machines["a"].phases["delete"] == 3.0
    assert rec.machines["b"].phases["delete"] == 2.0
    assert rec.machines["c"].phases["delete"] == 2.0
    assert sum(m.total for m in rec.machines.values()) == 7.0  # the batch is not counted thrice


def test_shared_phase_with_no_names(clock: Clock) -> None:
    rec = Recorder()
    with rec.shared_phase([], "delete"):
        clock.advance(1.0)
    assert rec.machines == {}


def test_machine_is_recorded_once() -> None:
    rec = Recorder()
    first = rec.machine("m", "debian", "session", "session")
    first.tests = 3
    assert rec.machine("m", "ubuntu", "function", "function") is first
    assert rec.machines["m"].image == "debian"


# -- served ------------------------------------------------------------------------------------


def test_served_counts_tests_and_waits() -> None:
    rec = Recorder()
    rec.machine("s", "debian", "session", "session")
    rec.machine("f", "debian", "function", "function")
    rec.served("s", "t.py::a", 0.0)
    rec.served("s", "t.py::b", 1.5)
    rec.served("f", "t.py::b", 2.0)
    assert rec.machines["s"].tests == 2
    assert rec.machines["f"].tests == 1
    assert rec.tests["t.py::b"].machines == ["s", "f"]
    assert rec.tests["t.py::b"].waited == 3.5
    assert rec.tests["t.py::a"].waited == 0.0


def test_served_by_an_unrecorded_machine_still_records_the_test() -> None:
    rec = Recorder()
    rec.served("elsewhere", "t.py::a", 1.0)
    assert rec.machines == {}
    assert rec.tests["t.py::a"].machines == ["elsewhere"]


def test_count_call_by_command() -> None:
    rec = Recorder()
    rec.count_call(["orbctl", "create", "debian", "m"], 0, 1.0)
    rec.count_call(["orbctl", "create", "debian", "n"], 1, 1.0)
    rec.count_call(["orbctl", "list"], 0, 0.1)
    rec.count_call(["orbctl"], 0, 0.1)
    assert rec.orbctl_calls == {"create": 2, "list": 1, "?": 1}


# -- merge (xdist workers -> controller) -------------------------------------------------------


def worker(clock: Clock, *, machine: str, test: str, create: float, calls: int) -> Recorder:
    rec = Recorder()
    rec.machine(machine, "debian", "session", "session")
    with rec.phase(machine, "create"):
        clock.advance(create)
    rec.served(machine, test, 1.0)
    for _ in range(calls):
        rec.count_call(["orbctl", "list"], 0, 0.1)
    return rec


def test_merge_sums_shared_machines_and_adds_the_rest(clock: Clock) -> None:
    controller = Recorder()
    gw0 = worker(clock, machine="shared", test="t.py::a", create=2.0, calls=2)
    gw0.machine("only0", "alpine", "function", "function")
    gw1 = worker(clock, machine="shared", test="t.py::b", create=3.0, calls=5)
    gw1.count_call(["orbctl", "delete", "x"], 0, 0.1)
    controller.merge(roundtrip(gw0))
    controller.merge(roundtrip(gw1))
    shared = controller.machines["shared"]
    assert shared.tests == 2
    assert shared.phases == {"create": 5.0}
    assert controller.machines["only0"].image == "alpine"
    assert set(controller.tests) == {"t.py::a", "t.py::b"}
    assert controller.tests["t.py::b"].machines == ["shared"]
    assert controller.tests["t.py::b"].waited == 1.0
    assert controller.orbctl_calls == {"list": 7, "delete": 1}


def test_merge_into_a_recorder_with_its_own_figures(clock: Clock) -> None:
    mine = worker(clock, machine="shared", test="t.py::a", create=1.0, calls=1)
    with mine.phase("shared", "delete"):
        clock.advance(0.5)
    other = worker(clock, machine="shared", test="t.py::b", create=2.0, calls=1)
    mine.merge(roundtrip(other))
    assert mine.machines["shared"].phases == {"create": 3.0, "delete": 0.5}
    assert mine.machines["shared"].tests == 2
    assert mine.orbctl_calls == {"list": 2}


@pytest.mark.parametrize(
    ("mine", "theirs", "merged"),
    [
        ("in use", "deleted", "deleted"),
        ("created", "kept", "kept"),
        ("created", "failed", "failed"),
        ("in use", "reused", "reused"),
        ("deleted", "in use", "deleted"),  # a worker that only used it knows less
        ("kept", "created", "kept"),
        ("reused", "in use", "reused"),
    ],
)
def test_merge_outcome_precedence(mine: str, theirs: str, merged: str) -> None:
    controller, fragment = Recorder(), Recorder()
    controller.machine("m", "debian", "session", "session").outcome = mine
    fragment.machine("m", "debian", "session", "session").outcome = theirs
    controller.merge(roundtrip(fragment))
    assert controller.machines["m"].outcome == merged


def test_merge_of_nothing() -> None:
    rec = Recorder()
    rec.merge({})
    rec.merge(roundtrip(Recorder()))
    assert (rec.machines, rec.tests, rec.orbctl_calls) == ({}, {}, {})


def test_merge_keeps_that_a_machine_was_reused() -> None:
    # gw0 only used the session machine; gw1 is the worker that adopted it from the last run.
    gw0, gw1 = Recorder(), Recorder()
    gw0.machine("orbpt-reuse-web", "debian", "session", "reuse")
    adopted = gw1.machine("orbpt-reuse-web", "debian", "session", "reuse")
    adopted.reused, adopted.outcome = True, "reused"
    controller = Recorder()
    for fragment in (gw0, gw1):  # the controller reads report-gw0.json, then report-gw1.json
        controller.merge(roundtrip(fragment))
    assert controller.machines["orbpt-reuse-web"].reused is True
    assert "0 created, 1 reused" in counts_line(summary_lines(controller))


# -- summary -----------------------------------------------------------------------------------


def test_summary_of_no_machines_is_empty() -> None:
    assert summary_lines(Recorder()) == []


def test_summary_counts_and_kept_lines(clock: Clock) -> None:
    rec = Recorder()
    rec.machine("orbpt-a", "debian", "function", "function").outcome = "deleted"
    rec.machine("orbpt-b", "debian", "function", "function").outcome = "deleted"
    rec.machine("orbpt-s", "ubuntu:24.04", "session", "session").outcome = "kept"
    reused = rec.machine("orbpt-r", "debian", "session", "reuse")
    reused.reused, reused.outcome = True, "kept for reuse"
    rec.machine("orbpt-tpl", "debian", "function", "template").outcome = "deleted"
    with rec.phase("orbpt-a", "create"):
        clock.advance(2.0)
    rec.served("orbpt-a", "t.py::a", 1.25)
    rec.served("orbpt-s", "t.py::b", 0.75)
    lines = summary_lines(rec)

    counts = counts_line(lines)
    assert counts.startswith("5 machine(s): 3 created, 1 reused, 3 deleted;")
    assert "2.0s spent in machine lifecycle" in counts
    assert "tests waited 2.0s for machines (max 1.2s)" in counts

    kept = [line for line in lines if line.startswith("kept ")]
    assert kept == ["kept orbpt-s: log in with `orb -m orbpt-s` or `ssh orbpt-s@orb`"]

    assert row(lines, "orbpt-tpl")[2] == "template"  # templates are named as such
    assert " ".join(row(lines, "orbpt-r")).endswith(" kept for reuse (reused)")
    assert "2.0" in row(lines, "orbpt-a")  # the create time in its column


def test_summary_rows_are_sorted_and_aligned() -> None:
    rec = Recorder()
    for name in ("orbpt-zz", "orbpt-a", "orbpt-mmmmmmmmmmmm"):
        rec.machine(name, "debian", "function", "function")
    lines = summary_lines(rec)
    table = lines[: 1 + len(rec.machines)]
    assert table[0].split()[0] == "machine"
    assert [line.split()[0] for line in table[1:]] == sorted(rec.machines)
    image_columns = {line.index("debian") for line in table[1:]}
    assert len(image_columns) == 1


def test_verbose_summary_lists_waits(clock: Clock) -> None:
    rec = Recorder()
    rec.machine("m", "debian", "function", "function")
    rec.served("m", "t.py::slow", 9.0)
    rec.served("m", "t.py::fast", 0.5)
    quiet, verbose = summary_lines(rec), summary_lines(rec, verbose=True)
    assert not any("t.py::slow" in line for line in quiet)
    listed = [line for line in verbose if "t.py::" in line]
    assert [line.split()[-1] for line in listed] == ["t.py::slow", "t.py::fast"]


# -- JSON report -------------------------------------------------------------------------------


def test_write_json_roundtrip(tmp_path: Path, clock: Clock) -> None:
    rec = worker(clock, machine="m", test="t.py::a", create=2.0, calls=3)
    rec.outcome("m", "deleted")
    path = tmp_path / "out" / "nested" / "report.json"
    write_json(path, rec, {"run_id": "abc123"})
    data = json.loads(path.read_text())
    assert data["run_id"] == "abc123"
    assert data["orbctl_calls"] == {"list": 3}
    [machine] = data["machines"]
    assert (machine["name"], machine["outcome"], machine["tests"]) == ("m", "deleted", 1)
    assert machine["phases"] == {"create": 2.0}
    assert [t["nodeid"] for t in data["tests"]] == ["t.py::a"]

    again = Recorder()
    again.merge(data)
    assert again.machines == rec.machines
    assert again.orbctl_calls == rec.orbctl_calls
    assert set(again.tests) == set(rec.tests)


# -- events (format 2) -------------------------------------------------------------------------

WALL = 1_700_000_000.0  # Clock.time() - Clock.monotonic()


def test_phase_events_have_wall_clock_times_worker_and_thread(clock: Clock) -> None:
    rec = Recorder(worker="gw3")
    rec.machine("m", "debian", "function", "function")
    with rec.phase("m", "clone"):
        clock.advance(2.0)

    def failing_start() -> None:
        with rec.phase("m", "start"):
            clock.advance(0.5)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        failing_start()
    clone, start = rec.events
    assert (clone.kind, clone.phase, clone.machines, clone.outcome) == (
        "phase",
        "clone",
        ["m"],
        "ok",
    )
    assert (clone.start, clone.end) == (WALL + 1000.0, WALL + 1002.0)
    assert (start.start, start.end, start.outcome) == (WALL + 1002.0, WALL + 1002.5, "failed")
    assert {(e.worker, e.thread) for e in rec.events} == {("gw3", "main")}


def test_background_threads_are_named_in_events(clock: Clock) -> None:
    import threading

    rec = Recorder()
    rec.machine("m", "debian", "function", "function")

    def prepare() -> None:
        with rec.phase("m", "clone"):
            clock.advance(1.0)

    thread = threading.Thread(target=prepare, name="orbstack-supply_4")
    thread.start()
    thread.join()
    assert [e.thread for e in rec.events] == ["orbstack-supply_4"]


def test_shared_phase_is_one_event_naming_every_machine(clock: Clock) -> None:
    rec = Recorder()
    for name in ("a", "b"):
        rec.machine(name, "debian", "function", "function")
    with rec.shared_phase(["a", "ghost", "b"], "delete"):
        clock.advance(3.0)
    [event] = rec.events
    assert event.machines == ["a", "b"]  # only machines of this run's report
    assert event.end - event.start == 3.0


def test_no_event_for_an_unknown_machine(clock: Clock) -> None:
    rec = Recorder()
    with rec.phase("ghost", "create"):
        clock.advance(1.0)
    assert rec.events == []


def test_waits_deploys_and_test_bodies_are_events(clock: Clock) -> None:
    rec = Recorder(worker="gw0")
    rec.machine("m", "debian", "function", "function")
    clock.advance(5.0)
    rec.served("m", "t.py::a", 2.0)  # waited the last two seconds
    rec.deployed("t.py::a", DeployStats("m", "deploys/web.py", 1.5, ok=False, changed=True))
    rec.test_body("t.py::a", WALL + 1005.0, WALL + 1008.0, ["m"], "failed")
    wait, deploy, body = rec.events
    assert (wait.kind, wait.start, wait.end, wait.nodeid) == (
        "wait",
        WALL + 1003.0,
        WALL + 1005.0,
        "t.py::a",
    )
    assert (deploy.kind, deploy.target, deploy.outcome) == ("deploy", "deploys/web.py", "failed")
    assert deploy.end - deploy.start == 1.5
    assert (body.kind, body.machines, body.outcome) == ("test", ["m"], "failed")


def test_report_format_2_sorts_events_and_keeps_run_times(clock: Clock) -> None:
    rec = Recorder()
    rec.machine("m", "debian", "function", "function")
    rec.run_started = WALL + 999.0
    rec.test_body("t.py::late", WALL + 1010.0, WALL + 1011.0, ["m"], "passed")
    with rec.phase("m", "create"):
        clock.advance(1.0)
    rec.run_finished = WALL + 1020.0
    data = roundtrip(rec)
    assert data["format"] == report.FORMAT == 2
    assert [e["kind"] for e in data["events"]] == ["phase", "test"]  # by start time
    assert (data["started"], data["finished"]) == (WALL + 999.0, WALL + 1020.0)
    assert "run" not in data["events"][0]  # unset fields are left out


def test_merging_worker_fragments_keeps_every_event(clock: Clock) -> None:
    controller = Recorder()
    controller.run_started = WALL + 990.0
    fragments = []
    for worker_id in ("gw0", "gw1"):
        rec = Recorder(worker=worker_id)
        rec.machine(f"m-{worker_id}", "debian", "function", "function")
        with rec.phase(f"m-{worker_id}", "clone"):
            clock.advance(1.0)
        rec.served(f"m-{worker_id}", f"t.py::{worker_id}", 0.5)
        fragments.append(roundtrip(rec))
    for fragment in fragments:
        controller.merge(fragment)
    merged = roundtrip(controller)
    assert len(merged["events"]) == 4
    assert {(e["worker"], e["kind"]) for e in merged["events"]} == {
        ("gw0", "phase"), ("gw0", "wait"), ("gw1", "phase"), ("gw1", "wait"),
    }  # fmt: skip
    assert merged["started"] == WALL + 990.0  # the workers know no start: the controller's
    assert merged["runs"] == []  # one run: events carry no run tag


def shard_report(tmp_path: Path, clock: Clock, run_id: str, test: str) -> Path:
    rec = Recorder(worker="gw0")
    rec.run_started = clock.time()
    rec.machine(f"orbpt-{run_id}-f-1", "debian", "function", "function").outcome = "deleted"
    with rec.phase(f"orbpt-{run_id}-f-1", "clone"):
        clock.advance(2.0)
    rec.served(f"orbpt-{run_id}-f-1", test, 2.0)
    rec.test_body(test, clock.time(), clock.time() + 1.0, [f"orbpt-{run_id}-f-1"], "passed")
    rec.run_finished = clock.time() + 1.5
    path = tmp_path / f"report-{run_id}.json"
    write_json(path, rec, {"run_id": run_id, "backend": "sim"})
    return path


def test_load_reports_merges_shards_and_tags_their_events(tmp_path: Path, clock: Clock) -> None:
    one = shard_report(tmp_path, clock, "aaaaaa", "t.py::a")
    two = shard_report(tmp_path, clock, "bbbbbb", "t.py::b")
    rec = report.load_reports([one, two])
    assert rec.runs == ["aaaaaa", "bbbbbb"]
    assert {e.run for e in rec.events} == {"aaaaaa", "bbbbbb"}
    assert set(rec.tests) == {"t.py::a", "t.py::b"}
    assert rec.run_started == json.loads(one.read_text())["started"]
    assert rec.run_finished == json.loads(two.read_text())["finished"]
    assert counts_line(summary_lines(rec)).startswith(
        "2 machine(s): 2 created, 0 reused, 2 deleted"
    )
    # merged once more (a merged report merged with a third shard): the tags survive
    merged = tmp_path / "merged.json"
    write_json(merged, rec)
    three = shard_report(tmp_path, clock, "cccccc", "t.py::c")
    again = report.load_reports([merged, three])
    assert {e.run for e in again.events} == {"aaaaaa", "bbbbbb", "cccccc"}


def test_load_reports_refuses_what_it_cannot_draw(tmp_path: Path, clock: Clock) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"machines": [], "tests": []}))  # format 1: no events
    with pytest.raises(report.ReportError, match="format 1 has no events"):
        report.load_reports([old])
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    with pytest.raises(report.ReportError, match="not a readable JSON report"):
        report.load_reports([junk])
    one = shard_report(tmp_path, clock, "aaaaaa", "t.py::a")
    with pytest.raises(report.ReportError, match="run aaaaaa was given twice"):
        report.load_reports([one, one])


def test_cli_timeline_merge_and_summary(
    tmp_path: Path, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    one = shard_report(tmp_path, clock, "aaaaaa", "t.py::a")
    two = shard_report(tmp_path, clock, "bbbbbb", "t.py::b")
    page = tmp_path / "out" / "timeline.html"
    assert report.main(["timeline", str(one), str(two), "-o", str(page)]) == 0
    text = page.read_text()
    assert "orbpt-aaaaaa-f-1" in text and "orbpt-bbbbbb-f-1" in text
    assert "2 machine(s): 2 created" in capsys.readouterr().out
    merged = tmp_path / "merged.json"
    assert report.main(["merge", str(one), str(two), "-o", str(merged)]) == 0
    assert len(json.loads(merged.read_text())["tests"]) == 2
    assert report.main(["summary", str(merged)]) == 0
    assert "t.py::a" in capsys.readouterr().out
    assert report.main(["summary", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: not a readable JSON report" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        report.main(["timeline", str(one)])  # no -o


def test_junit_properties_name_machines_wait_and_deploys(clock: Clock) -> None:
    rec = Recorder()
    rec.machine("s", "ubuntu:noble", "session", "session").actual_image = "debian bookworm"
    rec.machine("f", "debian", "function", "function")
    rec.served("s", "t.py::a", 1.25, role="session")
    rec.served("f", "t.py::a", 0.5, role="factory")
    rec.served("s", "t.py::a", 0.0, role="session")  # asked for twice: listed once
    rec.deployed("t.py::a", DeployStats("f", "web.py", 2.5, ok=True, changed=True))
    rec.deployed("t.py::a", DeployStats("f", "web.py", 1.0, ok=False, changed=False))
    assert rec.junit_properties("t.py::a") == [
        ("orbstack.machine.0.name", "s"),
        ("orbstack.machine.0.image", "ubuntu:noble"),
        ("orbstack.machine.0.actual_image", "debian bookworm"),
        ("orbstack.machine.0.role", "session"),
        ("orbstack.machine.1.name", "f"),
        ("orbstack.machine.1.image", "debian"),
        ("orbstack.machine.1.role", "factory"),
        ("orbstack.waited", "1.750"),
        ("orbstack.deploy.0.file", "web.py"),
        ("orbstack.deploy.0.machine", "f"),
        ("orbstack.deploy.0.outcome", "changed"),
        ("orbstack.deploy.0.seconds", "2.500"),
        ("orbstack.deploy.1.file", "web.py"),
        ("orbstack.deploy.1.machine", "f"),
        ("orbstack.deploy.1.outcome", "failed"),
        ("orbstack.deploy.1.seconds", "1.000"),
    ]
    assert rec.junit_properties("t.py::unknown") == []
