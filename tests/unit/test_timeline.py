"""The timeline page (timeline.py) from made-up reports: lanes, rows, bars, hover titles, the
summary, and that the file needs nothing from outside.  Its rendering in a real browser is
tested in tests/plugin/test_timeline.py."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest

from pytest_orbstack.report import Event, Recorder, summary_lines
from pytest_orbstack.timeline import render

T0 = 1_800_000_000.0


class Page(HTMLParser):
    """Elements with their attributes, and the text of each <title>."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.titles: list[str] = []
        self._in_title = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.titles.append(data)

    def having(self, cls: str) -> list[dict[str, str]]:
        return [a for _, a in self.elements if cls in a.get("class", "").split()]


def run_of(workers: list[str], run: str | None = None, tests_each: int = 2) -> Recorder:
    """A made-up run: per worker a pooled machine per test, cloned in the background, a wait,
    the body, a deploy in it, a batched delete; the controller deletes the base at the end."""
    rec = Recorder()
    rec.run_started = T0
    rec.machine("orbpt-base", "debian", "function", "base")
    rec.events.append(Event("phase", T0 + 1, T0 + 4, "main", "orbstack-supply_0", ["orbpt-base"],
                            phase="create", outcome="ok", run=run))  # fmt: skip
    for w, worker in enumerate(workers):
        for n in range(tests_each):
            name = f"orbpt-{worker}-pool-{n}"
            rec.machine(name, "debian", "function", "function").outcome = "deleted"
            start = T0 + 4 + n * 5 + w * 0.3
            for phase, a, b in (("clone", 0, 1), ("start", 1, 2), ("ready", 2, 2.5)):
                rec.events.append(Event("phase", start + a, start + b, worker,
                                        f"orbstack-supply_{n}", [name], phase=phase,
                                        outcome="ok", run=run))  # fmt: skip
            nodeid = f"test_x.py::test_{worker}_{n}"
            rec.served(name, nodeid, 0.0)
            rec.events.pop()  # its wait event, at the real time: made up below
            rec.events.append(Event("wait", start, start + 2.5, worker, "main", [name],
                                    nodeid=nodeid, run=run))  # fmt: skip
            rec.events.append(Event("test", start + 2.5, start + 4.5, worker, "main", [name],
                                    nodeid=nodeid, outcome="failed" if n else "passed",
                                    run=run))  # fmt: skip
            rec.events.append(Event("deploy", start + 3, start + 4, worker, "main", [name],
                                    nodeid=nodeid, target="web.py", outcome="ok",
                                    run=run))  # fmt: skip
            rec.events.append(Event("phase", start + 4.6, start + 5, worker, "orbstack-delete",
                                    [name], phase="delete", outcome="ok", run=run))  # fmt: skip
    rec.events.append(Event("phase", T0 + 30, T0 + 31, "main", "main", ["orbpt-base"],
                            phase="delete", outcome="ok", run=run))  # fmt: skip
    rec.run_finished = T0 + 32
    return rec


def page_of(rec: Recorder, **extra: Any) -> tuple[str, Page]:
    text = render({**rec.to_json(), **extra}, summary_lines(rec, verbose=True))
    return text, Page(text)


def lane_titles(page: Page) -> list[str]:
    return [a["data-lane"] for a in page.having("lane")]


def test_serial_run_has_one_lane_with_tests_and_machine_rows() -> None:
    rec = run_of(["main"])
    text, page = page_of(rec, run_id="abc123")
    assert lane_titles(page) == ["main"]
    for machine in rec.machines:
        assert any(machine in a["data-machines"].split() for a in page.having("bar")), machine
    kinds = {a["data-kind"] for a in page.having("bar")}
    assert kinds == {"phase", "test", "wait", "deploy"}
    assert "tests" in text and "machines (orbstack-supply_0)" in text
    assert "1 run(s) abc123" in text


def test_xdist_run_has_a_lane_per_worker_and_the_controller_first() -> None:
    workers = ["gw0", "gw1", "gw2", "gw3", "gw10"]
    _, page = page_of(run_of(workers))
    assert lane_titles(page) == ["controller", "gw0", "gw1", "gw2", "gw3", "gw10"]
    for worker in workers:
        bars = [a for a in page.having("bar") if a["data-lane"] == worker]
        assert {a["data-kind"] for a in bars} == {"phase", "test", "wait", "deploy"}


def test_shards_have_lanes_of_their_own() -> None:
    merged = Recorder()
    for run in ("run-one", "run-two"):
        merged.merge(run_of(["gw0", "gw1"], run=None).to_json(), run=run)
    _, page = page_of(merged)
    assert lane_titles(page) == [
        f"shard {i} ({run}) · {worker}"
        for i, run in ((1, "run-one"), (2, "run-two"))
        for worker in ("controller", "gw0", "gw1")
    ]


def test_hover_titles_say_what_when_and_where() -> None:
    _, page = page_of(run_of(["gw0"], tests_each=1))
    titles = "\n".join(page.titles)
    assert "clone of orbpt-gw0-pool-0\n1.00s, from +4.00s\ngw0 · thread orbstack-supply_0" in titles
    assert "test_x.py::test_gw0_0 waited for orbpt-gw0-pool-0\n2.50s" in titles
    assert "test test_x.py::test_gw0_0 (passed) on orbpt-gw0-pool-0" in titles
    assert "deploy web.py on orbpt-gw0-pool-0 (ok)" in titles


def test_failed_tests_and_phases_are_marked() -> None:
    rec = run_of(["gw0"])
    rec.events[1].outcome = "failed"  # a clone that failed
    _, page = page_of(rec)
    failed = page.having("failed")
    assert {a["data-kind"] for a in failed} == {"phase", "test"}


def test_text_is_escaped() -> None:
    rec = run_of(["gw0"], tests_each=1)
    for event in rec.events:
        if event.nodeid:
            event.nodeid = 'test_x.py::test[<script>alert("x")</script>]'
    text, _ = page_of(rec)
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert" in text


def test_the_page_needs_nothing_from_outside() -> None:
    text, page = page_of(run_of(["gw0", "gw1"]))
    for tag, attrs in page.elements:
        for key in ("src", "href"):
            assert key not in attrs, (tag, attrs)
    urls = set(re.findall(r"https?://[^\s\"')]+", text))
    assert urls == {"http://www.w3.org/2000/svg"}  # the SVG namespace, never fetched
    assert "@import" not in text and "@font-face" not in text


def test_summary_and_per_lane_totals() -> None:
    rec = run_of(["gw0", "gw1"])
    text, _ = page_of(rec)
    assert "machine(s):" in text  # the terminal summary's counts line
    # gw0: two tests of 2.0s each, waits of 2.5s each, 2 x 2.5s of phases plus 2 x 0.4s deletes
    row = re.search(r"<tr><td>gw0</td>(.*?)</tr>", text)
    assert row is not None
    cells = re.findall(r"<td>([^<]*)</td>", row.group(1))
    assert cells == ["2", "4.0", "5.0", "0.0", "5.8"]


def test_an_empty_report_still_renders() -> None:
    text, page = page_of(Recorder())
    assert page.having("bar") == []
    assert "(no machines)" in text


@pytest.mark.parametrize("seconds", [0.4, 7.0, 95.0, 3600.0])
def test_axis_ticks_are_round_and_cover_the_run(seconds: float) -> None:
    rec = Recorder()
    rec.run_started, rec.run_finished = T0, T0 + seconds
    text, _ = page_of(rec)
    ticks = [float(t) for t in re.findall(r'text-anchor="middle">([\d.]+)s<', text)]
    assert ticks[0] == 0.0
    assert 5 <= len(ticks) <= 11
    assert ticks[-1] <= seconds < ticks[-1] + (ticks[1] - ticks[0]) + 1e-9
