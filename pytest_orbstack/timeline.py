"""The timeline picture of a run: one self-contained HTML file drawn from a JSON report.

A lane per worker (per run, when CI shards' reports are drawn together); in each lane a row of
test bodies (with the waits for machines before them and the deploys inside them) and rows of
machine phases, one set per thread that did them (the thread that runs tests, the background
supply threads, the delete thread).  Hovering a bar names it (SVG ``<title>``) and highlights
every bar of the same machine.  Below, the run's summary (the terminal summary's lines) and
per-lane totals.

Hand-written SVG from the standard library: the picture is rectangles on a time axis, which
needs no plotting library; the file must open from a CI artifact with no network (no external
scripts, styles or fonts), and the plugin's dependencies stay what they are.  Input is the
report's ``dict`` (docs/report.md); this module imports nothing else of the plugin.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Fill colours, by phase or test outcome (colour-blind-safe Tableau 10).
COLOURS = {
    "create": "#4e79a7",
    "clone": "#f28e2b",
    "start": "#76b7b2",
    "ready": "#edc948",
    "deploy": "#b07aa1",
    "stop": "#9c755f",
    "delete": "#bab0ac",
    "passed": "#59a14f",
    "failed": "#e15759",
    "skipped": "#d4d4d4",
    "wait": "#ff9da7",
    "test deploy": "#7b4f9d",
}
LABEL_WIDTH = 250  # px for lane and row names
PLOT_WIDTH = 1200  # px for the time axis
ROW = 18  # px per row
BAR = 14  # px bar height
LANE_GAP = 14  # px between lanes
AXIS = 28  # px for the axis labels at the top
CHAR = 6.5  # px per character of the bar labels (11px sans-serif, roughly)


@dataclass
class Row:
    title: str
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Lane:
    key: tuple[str, str]  # (run, worker)
    title: str
    rows: list[Row] = field(default_factory=list)


def render(data: dict[str, Any], summary: Sequence[str] = ()) -> str:
    """The HTML page of report ``data`` (format 2, possibly merged from several runs), with the
    terminal summary's ``summary`` lines below the picture."""
    events = [e for e in data.get("events", []) if e.get("end") is not None]
    start, end = _span(data, events)
    lanes = _lanes(events, runs=list(data.get("runs") or []))
    scale = PLOT_WIDTH / max(end - start, 1e-6)
    body: list[str] = []
    y = AXIS
    for lane in lanes:
        body.append(_lane(lane, y, start, scale))
        y += len(lane.rows) * ROW + LANE_GAP
    height = y + 4
    width = LABEL_WIDTH + PLOT_WIDTH + 20
    svg = "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" id="timeline" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}">',
            _patterns(),
            _axis(end - start, scale, height),
            *body,
            "</svg>",
        ]
    )
    machines = data.get("machines", [])
    title = "pytest-orbstack timeline"
    runs = data.get("runs") or ([data["run_id"]] if data.get("run_id") else [])
    subtitle = (
        f"{len(runs)} run(s) {', '.join(runs)} · " if runs else ""
    ) + f"{len(machines)} machine(s) · {len(lanes)} lane(s) · {end - start:.1f}s"
    return PAGE.format(
        title=html.escape(title),
        subtitle=html.escape(subtitle),
        legend=_legend(),
        svg=svg,
        totals=_totals(lanes),
        summary=html.escape("\n".join(summary)) or "(no machines)",
        script=SCRIPT,
    )


def _span(data: dict[str, Any], events: list[dict[str, Any]]) -> tuple[float, float]:
    starts = [float(e["start"]) for e in events]
    ends = [float(e["end"]) for e in events]
    if data.get("started") is not None:
        starts.append(float(data["started"]))
    if data.get("finished") is not None:
        ends.append(float(data["finished"]))
    if not starts:
        return 0.0, 1.0
    return min(starts), max([*ends, min(starts) + 1e-3])


def _natural(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _lanes(events: list[dict[str, Any]], runs: list[str]) -> list[Lane]:
    keys = {(str(e.get("run") or ""), str(e.get("worker") or "main")) for e in events}
    run_order = {run: i for i, run in enumerate(runs)}
    several = len({run for run, _ in keys}) > 1
    xdist = {run for run, worker in keys if worker != "main"}
    lanes = []

    def order(key: tuple[str, str]) -> tuple[Any, ...]:
        run, worker = key
        return (run_order.get(run, len(runs)), run, worker != "main", _natural(worker))

    for key in sorted(keys, key=order):
        run, worker = key
        name = "controller" if worker == "main" and run in xdist else worker
        if several:
            shard = run_order.get(run)
            prefix = f"shard {shard + 1}" if shard is not None else "run"
            name = f"{prefix} ({run[:10]}) · {name}" if run else f"{prefix} · {name}"
        mine = [e for e in events if (str(e.get("run") or ""), str(e.get("worker"))) == key]
        lanes.append(Lane(key, name, _rows(mine)))
    return lanes


def _rows(events: list[dict[str, Any]]) -> list[Row]:
    """Test bodies and waits first; then machine phases, per thread, packed into as many rows
    as overlapping spans need (a replica's clone nests inside the clone that asked for it)."""
    rows: list[Row] = []
    tests = [e for e in events if e["kind"] in ("test", "wait")]
    if tests:
        deploys = [e for e in events if e["kind"] == "deploy"]
        rows.append(Row("tests", sorted(tests + deploys, key=lambda e: e["start"])))
    threads = sorted(
        {str(e.get("thread")) for e in events if e["kind"] == "phase"},
        key=lambda t: (t != "main", _natural(t)),
    )
    for thread in threads:
        phases = sorted(
            (e for e in events if e["kind"] == "phase" and str(e.get("thread")) == thread),
            key=lambda e: (e["start"], -e["end"]),
        )
        packed: list[list[dict[str, Any]]] = []
        for event in phases:
            for row in packed:
                if row[-1]["end"] <= event["start"] + 1e-6:
                    row.append(event)
                    break
            else:
                packed.append([event])
        label = "machines (test thread)" if thread == "main" else f"machines ({thread})"
        for i, row in enumerate(packed):
            rows.append(Row(label if i == 0 else "", row))
    return rows


def _lane(lane: Lane, top: float, start: float, scale: float) -> str:
    height = len(lane.rows) * ROW
    parts = [
        f'<g class="lane" data-lane="{_attr(lane.title)}">',
        f'<rect class="lane-bg" x="0" y="{top - 2}" width="{LABEL_WIDTH + PLOT_WIDTH + 10}" '
        f'height="{height + 4}"/>',
        f'<text class="lane-title" x="6" y="{top + 12}">{html.escape(lane.title)}</text>',
    ]
    for i, row in enumerate(lane.rows):
        y = top + i * ROW
        if row.title:
            parts.append(
                f'<text class="row-title" x="{LABEL_WIDTH - 6}" y="{y + 12}" '
                f'text-anchor="end">{html.escape(row.title)}</text>'
            )
        for event in row.events:
            parts.append(_bar(event, lane.title, y, start, scale))
    parts.append("</g>")
    return "\n".join(parts)


def _bar(event: dict[str, Any], lane: str, y: float, start: float, scale: float) -> str:
    x = LABEL_WIDTH + (float(event["start"]) - start) * scale
    width = max(1.0, (float(event["end"]) - float(event["start"])) * scale)
    seconds = float(event["end"]) - float(event["start"])
    machines = [str(m) for m in event.get("machines", [])]
    kind = event["kind"]
    top, height = y + 2, BAR
    if kind == "phase":
        phase = str(event.get("phase"))
        fill, label = COLOURS.get(phase, "#888"), phase
        what = f"{phase} of {', '.join(machines)}"
    elif kind == "test":
        outcome = str(event.get("outcome"))
        fill, label = COLOURS.get(outcome, "#888"), _short(str(event.get("nodeid")))
        what = f"test {event.get('nodeid')} ({outcome}) on {', '.join(machines)}"
    elif kind == "wait":
        fill, label = "url(#wait)", "wait"
        what = f"{event.get('nodeid')} waited for {', '.join(machines)}"
    else:  # deploy inside a test: a thinner bar over the test body
        fill, label = COLOURS["test deploy"], ""
        top, height = y + 10, BAR - 8
        what = f"deploy {event.get('target')} on {', '.join(machines)} ({event.get('outcome')})"
    failed = event.get("outcome") == "failed"
    title = (
        f"{what}\n{seconds:.2f}s, from +{float(event['start']) - start:.2f}s"
        f"\n{lane} · thread {event.get('thread')}"
    )
    classes = f"bar {kind}" + (" failed" if failed else "")
    text = ""
    if label and width > CHAR * len(label) + 6:
        text = f'<text class="bar-label" x="{x + 3:.1f}" y="{y + 13}">{html.escape(label)}</text>'
    return (
        f'<g class="{classes}" data-kind="{kind}" data-machines="{_attr(" ".join(machines))}" '
        f'data-lane="{_attr(lane)}"><rect x="{x:.1f}" y="{top}" width="{width:.1f}" '
        f'height="{height}" fill="{fill}"/>{text}<title>{html.escape(title)}</title></g>'
    )


def _short(nodeid: str) -> str:
    return nodeid.rsplit("::", 1)[-1]


def _attr(text: str) -> str:
    return html.escape(text, quote=True)


def _patterns() -> str:
    return (
        '<defs><pattern id="wait" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fde0e3"/>'
        f'<rect width="3" height="6" fill="{COLOURS["wait"]}"/></pattern></defs>'
    )


def _step(seconds: float) -> float:
    """A round tick interval giving about ten ticks."""
    raw = seconds / 10
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return float(factor * magnitude)
    return float(10 * magnitude)


def _axis(seconds: float, scale: float, height: float) -> str:
    step = _step(seconds)
    parts = ['<g class="axis">']
    tick = 0.0
    while tick <= seconds + 1e-9:
        x = LABEL_WIDTH + tick * scale
        parts.append(f'<line x1="{x:.1f}" y1="{AXIS - 6}" x2="{x:.1f}" y2="{height}"/>')
        label = f"{tick:g}s"
        parts.append(f'<text x="{x:.1f}" y="{AXIS - 10}" text-anchor="middle">{label}</text>')
        tick += step
    parts.append("</g>")
    return "\n".join(parts)


def _legend() -> str:
    items = []
    for name, colour in COLOURS.items():
        swatch = (
            '<svg width="14" height="10"><rect width="14" height="10" fill="url(#wait)"/></svg>'
            if name == "wait"
            else f'<span class="swatch" style="background:{colour}"></span>'
        )
        items.append(f"<span>{swatch} {html.escape(name)}</span>")
    return " ".join(items)


def _totals(lanes: Iterable[Lane]) -> str:
    """Per lane: tests run, seconds in test bodies, seconds waited for machines, seconds of
    machine phases (in the test thread, and in the background)."""
    rows = []
    for lane in lanes:
        events = [e for row in lane.rows for e in row.events]

        def seconds(events: Iterable[dict[str, Any]]) -> float:
            return sum(float(e["end"]) - float(e["start"]) for e in events)

        tests = [e for e in events if e["kind"] == "test"]
        waits = [e for e in events if e["kind"] == "wait"]
        fore = [e for e in events if e["kind"] == "phase" and e.get("thread") == "main"]
        back = [e for e in events if e["kind"] == "phase" and e.get("thread") != "main"]
        cells = [
            html.escape(lane.title),
            str(len(tests)),
            f"{seconds(tests):.1f}",
            f"{seconds(waits):.1f}",
            f"{seconds(fore):.1f}",
            f"{seconds(back):.1f}",
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = (
        "<tr><th>lane</th><th>tests</th><th>in test bodies (s)</th><th>waited (s)</th>"
        "<th>machine phases, test thread (s)</th><th>machine phases, background (s)</th></tr>"
    )
    return f'<table class="totals">{head}{"".join(rows)}</table>'


SCRIPT = """
for (const bar of document.querySelectorAll('#timeline .bar')) {
  const names = (bar.dataset.machines || '').split(' ').filter(Boolean);
  bar.addEventListener('mouseenter', () => {
    for (const other of document.querySelectorAll('#timeline .bar')) {
      const theirs = (other.dataset.machines || '').split(' ');
      if (names.some((n) => theirs.includes(n))) other.classList.add('hl');
    }
  });
  bar.addEventListener('mouseleave', () => {
    for (const other of document.querySelectorAll('#timeline .hl')) other.classList.remove('hl');
  });
}
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font: 13px system-ui, -apple-system, "Segoe UI", sans-serif; margin: 16px; color: #222; }}
h1 {{ font-size: 18px; margin: 0 0 4px; }}
.sub {{ color: #555; margin-bottom: 10px; }}
.legend span {{ margin-right: 12px; white-space: nowrap; }}
.swatch {{ display: inline-block; width: 14px; height: 10px; }}
.scroll {{ overflow-x: auto; border: 1px solid #ddd; margin: 10px 0; }}
svg text {{ font: 11px system-ui, sans-serif; fill: #222; }}
.lane-bg {{ fill: #f7f7f7; }}
.lane-title {{ font-weight: bold; }}
.row-title {{ fill: #555; }}
.axis line {{ stroke: #e3e3e3; }}
.axis text {{ fill: #666; }}
.bar rect {{ stroke: rgba(0,0,0,.25); stroke-width: .5; }}
.bar.test rect, .bar.wait rect {{ stroke: #fff; stroke-width: 1; }}
.bar.failed rect {{ stroke: #b00; stroke-width: 2; }}
.bar.hl rect {{ stroke: #000; stroke-width: 2; }}
.bar-label {{ pointer-events: none; }}
table.totals {{ border-collapse: collapse; margin: 10px 0; }}
table.totals td, table.totals th {{ border: 1px solid #ddd; padding: 2px 8px; text-align: right; }}
table.totals td:first-child {{ text-align: left; }}
pre {{ background: #f7f7f7; padding: 8px; overflow-x: auto; }}
</style>
</head>
<body>
<h1>{title}</h1>
<div class="sub">{subtitle}</div>
<div class="legend">{legend}</div>
<div class="scroll">
{svg}
</div>
<h2>per lane</h2>
{totals}
<h2>summary</h2>
<pre id="summary">{summary}</pre>
<script>{script}</script>
</body>
</html>
"""

__all__ = ["COLOURS", "render"]
