"""What a run shows: the JSON report's events (format 2) agree with what happened, the timeline
page renders in a real browser (Chromium) with a lane per worker and bars for every machine,
for a serial run, ``-n 4``, and CI shards (pytest-split) drawn together.

Each shard is checked to make only the machines its own tests need (the simulator's operation
log, counted between the shards' runs).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.browser import Rendered, chromium, open_in_browser
from tests.plugin.conftest import OrbEnv

DEPLOY = (
    "from pyinfra.operations import server\n"
    "server.shell(name='mark', commands=['touch /var/tmp/provisioned'])\n"
)

SUITE = """
import pytest

@pytest.mark.orbstack(isolation="function")
@pytest.mark.parametrize("n", range({n}))
def test_fresh(orb_vm, n):
    assert not orb_vm.run(["test", "-e", "/tmp/used"]).ok
    orb_vm.run(["touch", "/tmp/used"], check=True)

def test_session(orb_vm):
    assert orb_vm.run(["true"]).ok

def test_deploy_in_test(orb_vm):
    assert orb_vm.deploy("deploys/mark.py").ok
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", *args, timeout=900)


def spans(data: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in data["events"] if e["kind"] == kind]


def check_events(data: dict[str, Any], workers: set[str]) -> None:
    """The events tell a consistent story of the run."""
    assert data["format"] == 2
    started, finished = data["started"], data["finished"]
    for event in data["events"]:
        assert started - 0.5 <= event["start"] <= event["end"] <= finished + 0.5, event
    assert {e["worker"] for e in data["events"] if e["kind"] == "test"} <= workers
    names = {m["name"] for m in data["machines"]}
    phased = {name for e in spans(data, "phase") for name in e["machines"]}
    assert phased == names  # every machine of the report has its lifecycle on the timeline
    for body in spans(data, "test"):
        assert body["outcome"] == "passed"
        for name in body["machines"]:
            # the machine was ready before the body began, and deleted after it ended
            made = [e for e in spans(data, "phase") if name in e["machines"]]
            ready = [e["end"] for e in made if e["phase"] == "ready"]
            assert ready and max(ready) <= body["start"] + 0.05, (name, body)
            deletes = [e["start"] for e in made if e["phase"] == "delete"]
            assert deletes and min(deletes) >= body["end"] - 0.05, (name, body)
        [wait] = [w for w in spans(data, "wait") if w["nodeid"] == body["nodeid"]]
        assert wait["end"] <= body["start"] + 0.05
        assert wait["worker"] == body["worker"]
    [deploy] = spans(data, "deploy")
    [body] = [b for b in spans(data, "test") if b["nodeid"] == deploy["nodeid"]]
    assert body["start"] <= deploy["start"] <= deploy["end"] <= body["end"] + 0.05
    assert deploy["target"].endswith("mark.py") and deploy["outcome"] == "ok"


def check_page(shown: Rendered, data: dict[str, Any], lanes: list[str]) -> None:
    """Chromium laid out a lane per worker and, for every machine, bars of real size inside
    the picture."""
    measured = shown.measured
    assert [lane["lane"] for lane in measured["lanes"]] == lanes
    assert all(lane["h"] > 0 for lane in measured["lanes"])
    svg = measured["svg"]
    for machine in data["machines"]:
        bars = shown.bars_of(machine["name"])
        assert bars, f"no bar for {machine['name']}"
        for bar in bars:
            assert bar["w"] >= 1 and bar["h"] > 0, bar
            assert svg["x"] - 0.5 <= bar["x"] <= bar["x"] + bar["w"] <= svg["x"] + svg["w"] + 0.5
    assert measured["scripts"] == 0 and measured["links"] == 0  # nothing loaded from outside
    width, height = shown.size
    assert width >= 1000 and height >= 200, shown.size


@pytest.mark.parametrize(
    ("workers", "lanes"),
    [([], ["main"]), (["-n", "4"], ["controller", "gw0", "gw1", "gw2", "gw3"])],
    ids=["serial", "xdist4"],
)
def test_report_events_and_the_timeline_in_a_browser(
    pytester: pytest.Pytester, orb_env: OrbEnv, tmp_path: Path, workers: list[str], lanes: list[str]
) -> None:
    chromium()  # skip before the run when there is no browser
    (pytester.path / "deploys").mkdir()
    (pytester.path / "deploys" / "mark.py").write_text(DEPLOY)
    pytester.makepyfile(test_suite=SUITE.format(n=4 if workers else 2))
    report, page = pytester.path / "report.json", pytester.path / "timeline.html"
    result = run(pytester, f"--orbstack-report={report}", f"--orbstack-timeline={page}", *workers)
    result.assert_outcomes(passed=6 if workers else 4)
    data = json.loads(report.read_text())
    check_events(data, {lane if lane != "controller" else "main" for lane in lanes})
    if workers:
        # four workers ran tests, so four lanes have test bodies (the scheduler spreads 6 tests)
        assert len({e["worker"] for e in spans(data, "test")}) >= 2
    shown = open_in_browser(page, tmp_path / "browser")
    busy = {e["worker"] for e in data["events"]}  # a worker the scheduler gave nothing has no lane
    check_page(shown, data, [lane for lane in lanes if lane in busy or lane == "controller"])


# -- CI shards (pytest-split) -------------------------------------------------------------------

SHARD_A = """
import pytest
pytestmark = pytest.mark.orbstack(isolation="function")

@pytest.mark.parametrize("n", range(3))
def test_a(orb_vm, n):
    assert orb_vm.run(["true"]).ok
"""
SHARD_B = """
import pytest
pytestmark = pytest.mark.orbstack(deploy="deploys/mark.py")

@pytest.mark.parametrize("n", range(3))
def test_b(orb_vm, n):
    assert orb_vm.run(["test", "-e", "/var/tmp/provisioned"]).ok
"""


def made_since(orb_env: OrbEnv, offset: int) -> tuple[Counter[str], int]:
    ops = orb_env.sim.ops()
    made: Counter[str] = Counter()
    for op in ops[offset:]:
        if op.get("rc") == 0 and op["cmd"] in ("create", "clone"):
            made[op["cmd"]] += 1
    return made, len(ops)


def test_shards_make_only_their_machines_and_merge_into_one_timeline(
    pytester: pytest.Pytester, orb_env: OrbEnv, tmp_path: Path
) -> None:
    pytest.importorskip("pytest_split", reason="pytest-split (the test extra) is not installed")
    chromium()
    (pytester.path / "deploys").mkdir()
    (pytester.path / "deploys" / "mark.py").write_text(DEPLOY)
    pytester.makepyfile(test_a=SHARD_A, test_b=SHARD_B)
    reports = []
    offset = 0
    shards: list[Counter[str]] = []
    for group in (1, 2):
        report = pytester.path / f"report-{group}.json"
        result = run(
            pytester, "--splits", "2", "--group", str(group), f"--orbstack-report={report}"
        )
        result.assert_outcomes(passed=3)
        made, offset = made_since(orb_env, offset)
        shards.append(made)
        reports.append(report)
    # pytest-split keeps file order without recorded durations: shard 1 is test_a, 2 is test_b.
    # Shard 1: its base, then one clone per test; nothing of test_b's session machine.
    assert shards[0] == Counter({"create": 1, "clone": 3})
    first = json.loads(reports[0].read_text())
    assert {t["nodeid"].split("::")[0] for t in first["tests"]} == {"test_a.py"}
    assert not [m for m in first["machines"] if m["deploy"]]
    # Shard 2: only the provisioned session machine (its base's only user: created directly)
    assert shards[1] == Counter({"create": 1})
    second = json.loads(reports[1].read_text())
    assert [m["deploy"] for m in second["machines"]] == ["mark.py"]

    page = tmp_path / "shards.html"
    merged = tmp_path / "merged.json"
    for command, out in (("timeline", page), ("merge", merged)):
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest_orbstack.report",
                command,
                *map(str, reports),
                "-o",
                str(out),
            ],  # fmt: skip
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert cli.returncode == 0, cli.stderr
        assert f"{len(first['machines']) + len(second['machines'])} machine(s)" in cli.stdout
    data = json.loads(merged.read_text())
    assert data["runs"] == [first["run_id"], second["run_id"]]
    assert len(data["tests"]) == 6
    shown = open_in_browser(page, tmp_path / "browser")
    check_page(
        shown,
        data,
        [f"shard {i} ({r['run_id']}) · main" for i, r in ((1, first), (2, second))],
    )
