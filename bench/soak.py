"""Reliability soak, by hand: run the reliability suite's soak form and print its figures.

    python bench/soak.py -n 20                # faults, SIGKILL and concurrent-run soaks, N each
    python bench/soak.py -n 20 --only faults  # one of them (faults | kill | concurrent)

It runs ``python -m pytest tests/reliability --soak N -m soak -n WORKERS`` (every iteration in a
fresh simulator home and registry), collects one JSON line per iteration through
``$ORBSTACK_SOAK_RESULTS`` and prints, per kind: iterations, clean passes, inner-test failures,
leaked machines, leaked registry records, foreign machines lost, faults injected, and wall time.
The exit status is pytest's.  docs/reliability.md quotes its output.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SELECT = {
    "faults": "test_transient_faults",
    "kill": "test_sigkill",
    "concurrent": "test_two_runs",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--iterations", type=int, default=20)
    parser.add_argument("--workers", default="2", help="pytest-xdist workers (default 2)")
    parser.add_argument("--only", choices=sorted(SELECT), action="append")
    parser.add_argument("--keep-results", help="also write the JSON lines to this file")
    args = parser.parse_args()

    results = Path(tempfile.mkdtemp(prefix="orbstack-soak-")) / "results.jsonl"
    kinds = args.only or sorted(SELECT)
    argv = [
        sys.executable, "-m", "pytest", "tests/reliability", "-p", "no:cacheprovider", "-q",
        "-n", args.workers, "--soak", str(args.iterations), "-m", "soak",
        "-k", " or ".join(SELECT[k] for k in kinds),
    ]  # fmt: skip
    print("$ python3 " + shlex.join(argv[1:]), flush=True)
    started = time.monotonic()
    proc = subprocess.run(
        argv, cwd=ROOT, env={**os.environ, "ORBSTACK_SOAK_RESULTS": str(results)}, check=False
    )
    wall = time.monotonic() - started
    rows = _read(results)
    if args.keep_results:
        Path(args.keep_results).write_text("".join(json.dumps(r) + "\n" for r in rows))
    print()
    print(summary(rows, wall))
    print(f"pytest exit status: {proc.returncode}")
    return proc.returncode


def _read(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def summary(rows: list[dict[str, Any]], wall: float) -> str:
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_kind[row["kind"]].append(row)
    head = (
        f"{'kind':<11}{'runs':>5}{'clean':>7}{'failed':>8}{'leaked':>8}{'records':>9}"
        f"{'foreign':>9}  faults injected"
    )
    lines = [head, "-" * len(head)]
    for kind in sorted(by_kind):
        items = by_kind[kind]
        faults: Counter[str] = Counter()
        for item in items:
            faults.update(item.get("faults", {}))
        clean = sum(
            1
            for i in items
            if not i.get("failed")
            and not i.get("leaked_machines")
            and not i.get("leaked_records")
            and not i.get("foreign_lost")
        )
        fault_text = ", ".join(f"{k} {v}" for k, v in sorted(faults.items())) or "-"
        if kind == "kill":
            phases = Counter(i["phase"] for i in items)
            fault_text = "SIGKILL in " + ", ".join(f"{p} {n}" for p, n in sorted(phases.items()))
        lines.append(
            f"{kind:<11}{len(items):>5}{clean:>7}"
            f"{sum(i.get('failed', 0) for i in items):>8}"
            f"{sum(i.get('leaked_machines', 0) for i in items):>8}"
            f"{sum(i.get('leaked_records', 0) for i in items):>9}"
            f"{sum(i.get('foreign_lost', 0) for i in items):>9}  {fault_text}"
        )
    inner = [i["wall"] for i in by_kind.get("faults", []) if "wall" in i]
    if inner:
        inner.sort()
        lines.append(
            f"fault-suite run time: median {inner[len(inner) // 2]:.1f}s, max {inner[-1]:.1f}s"
        )
    lines.append(f"wall time: {wall / 60:.1f} min")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
