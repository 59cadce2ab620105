"""Session machine overhead: what the plugin adds to a test beyond its ``orbctl run`` calls.

    python bench/session_overhead.py [--tests 500] [--repeat 2] [--scale 1] [--short]

Two suites of ``--tests`` tiny tests, each doing one ``Machine.run(["true"])`` on one session
machine, run on the simulator in fresh homes, alternately, ``--repeat`` times:

* plugin - ``bench/suites/session_plugin``: ``orb_vm`` with ``isolation="session"``;
* plain - ``bench/suites/session_plain`` (``-p no:orbstack``): a session fixture makes the
  machine with the same calls and hands out a ``Machine``; the tests make the same run call.

Both suites carry the same per-test trace hook (``bench/suites/conftest.py``).  Printed:

* the plugin's added time per test, two ways: over the whole run (wall clock minus the time
  spent making and deleting the session machine - from the plugin's JSON report, or timed by the
  plain fixture - divided by the number of tests), and in steady state (tests 2..N-1, protocol
  start of the second to protocol end of the second-to-last, from the trace); the minimum over
  the repeats of each;
* the ratio of plugin to plain per-test time, and of the added time to the plain per-test time;
* ``orbctl`` invocations per test, from the simulator's operation log attributed to tests by the
  trace (target: exactly one, the ``run``), with the first and the last test (which make and
  delete the machine) shown apart.

``--short`` (CI): 60 tests, 1 repeat, scale 0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

from _common import Bench, PytestRun, add_common_args, describe_model, ratio, run_pytest


@dataclass
class Measured:
    wall: float
    lifecycle: float
    steady_per_test: float
    per_test_ops: list[Counter[str]]
    calls_in_report: dict[str, int]

    def net_per_test(self, tests: int) -> float:
        return (self.wall - self.lifecycle) / tests


def trace_ops(run: PytestRun) -> tuple[list[Any], list[Counter[str]]]:
    marks = json.loads((run.home / "trace.json").read_text())
    data = (run.sim_home / "ops.log").read_bytes()
    per_test: list[Counter[str]] = []
    for _nodeid, _t0, _t1, s0, s1 in marks:
        lines = data[s0:s1].decode().splitlines()
        per_test.append(Counter(str(json.loads(line)["cmd"]) for line in lines if line))
    return marks, per_test


def measure(run: PytestRun, lifecycle: float) -> Measured:
    marks, per_test = trace_ops(run)
    steady = (marks[-2][2] - marks[1][1]) / max(1, len(marks) - 2)
    calls = run.report().get("orbctl_calls", {})
    return Measured(run.seconds, lifecycle, steady, per_test, calls)


def plugin_lifecycle(run: PytestRun) -> float:
    return sum(sum(m.get("phases", {}).values()) for m in run.report().get("machines", []))


def plain_lifecycle(run: PytestRun) -> float:
    data = json.loads((run.home / "lifecycle.json").read_text())
    return float(data["create"] + data["delete"])


def fmt_ops(counter: Counter[str]) -> str:
    return ", ".join(f"{cmd} {n}" for cmd, n in sorted(counter.items())) or "none"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_common_args(ap, short_help="CI mode: 60 tests, 1 repeat, scale 0.1")
    ap.add_argument("--tests", type=int, default=None, help="tests per suite (default 500)")
    ap.add_argument("--repeat", type=int, default=None, help="runs of each suite (default 2)")
    args = ap.parse_args()
    tests = args.tests or (60 if args.short else 500)
    if tests < 3:
        ap.error("--tests must be at least 3")
    repeat = args.repeat or (1 if args.short else 2)
    scale = args.scale if args.scale is not None else (0.1 if args.short else 1.0)

    bench = Bench(latency=args.latency, scale=scale, keep=args.keep_home)
    plugin_runs: list[Measured] = []
    plain_runs: list[Measured] = []
    try:
        bench.prepare()
        print(
            f"session machine overhead: {tests} tiny tests (one `run true` each) on one session "
            f"machine, {repeat} repeat(s), {os.cpu_count()} CPUs"
        )
        print(describe_model(bench))
        for i in range(repeat):
            for variant in ("plain", "plugin"):
                label = f"{variant}-{i}"
                run = run_pytest(
                    bench,
                    label,
                    [f"session_{variant}"],
                    extra_env={"BENCH_TESTS": str(tests)},
                    plugin=variant == "plugin",
                    trace=True,
                )
                if variant == "plugin":
                    m = measure(run, plugin_lifecycle(run))
                    plugin_runs.append(m)
                else:
                    m = measure(run, plain_lifecycle(run))
                    plain_runs.append(m)
                print(
                    f"  {label:<9} wall {m.wall:6.1f}s, machine lifecycle {m.lifecycle:5.2f}s, "
                    f"steady state {m.steady_per_test * 1000:6.1f} ms/test"
                )
    finally:
        bench.cleanup()

    def best(runs: list[Measured], key: Any) -> float:
        return float(min(key(r) for r in runs))

    plug_net = best(plugin_runs, lambda r: r.net_per_test(tests))
    plain_net = best(plain_runs, lambda r: r.net_per_test(tests))
    plug_steady = best(plugin_runs, lambda r: r.steady_per_test)
    plain_steady = best(plain_runs, lambda r: r.steady_per_test)
    print("per test (minimum over repeats):")
    print(
        f"  whole run, machine lifecycle excluded: plugin {plug_net * 1000:.1f} ms, "
        f"plain {plain_net * 1000:.1f} ms"
    )
    print(
        f"  steady state (tests 2..{tests - 1}):          plugin {plug_steady * 1000:.1f} ms, "
        f"plain {plain_steady * 1000:.1f} ms"
    )
    added_net, added_steady = plug_net - plain_net, plug_steady - plain_steady
    print(f"plugin added time per test (whole run):    {added_net * 1000:+.1f} ms")
    print(f"plugin added time per test (steady state): {added_steady * 1000:+.1f} ms")
    print(f"ratio: plugin / plain time per test (whole run) = {ratio(plug_net, plain_net)}")
    print(
        f"ratio: plugin / plain time per test (steady state) = {ratio(plug_steady, plain_steady)}"
    )
    print(
        "ratio: plugin added time / plain time per test (steady state) = "
        f"{added_steady / plain_steady:+.3f}"
    )

    last = plugin_runs[-1]
    steady_ops = last.per_test_ops[1:-1]
    totals = [sum(c.values()) for c in steady_ops]
    by_cmd: Counter[str] = Counter()
    for c in steady_ops:
        by_cmd.update(c)
    mean = statistics.mean(totals)
    print(
        f"orbctl invocations per test (steady state, tests 2..{tests - 1}): mean {mean:.3f}, "
        f"min {min(totals)}, max {max(totals)}; by command per test: "
        + ", ".join(f"{cmd} {n / len(steady_ops):.3f}" for cmd, n in sorted(by_cmd.items()))
    )
    only_run = all(c == Counter({"run": 1}) for c in steady_ops)
    print(f"  target exactly one (the run) per test: {'met' if only_run else 'NOT met'}")
    print(f"  first test: {fmt_ops(last.per_test_ops[0])}")
    print(f"  last test:  {fmt_ops(last.per_test_ops[-1])}")
    own = dict(sorted(last.calls_in_report.items()))
    print(f"  plugin's own count (JSON report, whole run): {own}")
    plain_ops = plain_runs[-1].per_test_ops[1:-1]
    print(
        "  plain suite, steady state: "
        f"{statistics.mean(sum(c.values()) for c in plain_ops):.3f} invocations per test"
    )
    if args.short:
        print("(short mode: small counts and scale; the figures are not the documented ones)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
