"""A real headless browser for the timeline's tests: Debian's ``chromium``.

:func:`open_in_browser` loads a copy of a page with a measuring script appended, so what comes
back is what Chromium laid out (each bar's box on screen), not what the HTML text says, and takes
a screenshot next to it (a test artefact under the test's ``tmp_path``, never committed).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MEASURE = """
<script>
(() => {
  const box = (el) => { const r = el.getBoundingClientRect();
    return {x: r.x, y: r.y, w: r.width, h: r.height}; };
  const svg = document.querySelector('#timeline');
  const bars = [...document.querySelectorAll('#timeline .bar')].map((g) => ({
    kind: g.dataset.kind, machines: (g.dataset.machines || '').split(' ').filter(Boolean),
    lane: g.dataset.lane, title: g.querySelector('title').textContent,
    ...box(g.querySelector('rect')) }));
  const lanes = [...document.querySelectorAll('#timeline .lane')].map((g) => ({
    lane: g.dataset.lane, ...box(g) }));
  const out = document.createElement('pre');
  out.id = 'measured';
  out.textContent = JSON.stringify({svg: svg ? box(svg) : null, bars, lanes,
    scripts: [...document.scripts].filter((s) => s.src).length,
    links: [...document.querySelectorAll('link[href], img[src], image')].length});
  document.body.appendChild(out);
})();
</script>
"""


def chromium() -> str:
    """The browser's path; skips the test (with the fix) when there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless browser: apt-get install -y --no-install-recommends chromium")


@dataclass
class Rendered:
    measured: dict[str, Any]
    screenshot: Path
    size: tuple[int, int]  # the screenshot's width and height in pixels

    def bars_of(self, machine: str) -> list[dict[str, Any]]:
        return [b for b in self.measured["bars"] if machine in b["machines"]]


def _browser(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--no-first-run", f"--user-data-dir={cwd / 'chromium-profile'}", *args]  # fmt: skip
    env = {**os.environ, "HOME": str(cwd)}
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, cwd=cwd, env=env, check=False
    )


def open_in_browser(page: Path, out: Path) -> Rendered:
    """Lay ``page`` out in Chromium; returns the measured boxes and a screenshot in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    probe = out / f"measure-{page.name}"
    probe.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    dom = _browser("--dump-dom", probe.as_uri(), cwd=out)
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"chromium rendered nothing (rc {dom.returncode}): {dom.stderr[-2000:]}"
    measured = json.loads(html.unescape(found.group(1)))
    height = int(max([b["y"] + b["h"] for b in measured["bars"]] or [600]) + 400)
    shot = out / f"{page.stem}.png"
    run = _browser(f"--screenshot={shot}", f"--window-size=1500,{height}", page.as_uri(), cwd=out)
    assert shot.is_file(), f"no screenshot (rc {run.returncode}): {run.stderr[-2000:]}"
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG"
    width, tall = struct.unpack(">II", head[16:24])
    return Rendered(measured, shot, (width, tall))
