"""Cold and warm runs with ``--orbstack-reuse``: what a second run of the same suite creates, and
how soon its first test starts.

    python bench/warm_run.py [--workers 1,2,4] [--tests 16] [--scale 1] [--short]

For each worker count, in a fresh simulator home: the fresh-machine suite of
``bench/fresh_machines.py`` (``bench/suites/fresh_plugin``: one spec with a deploy, a fresh
machine per test) runs twice with ``--orbstack-reuse``.  The cold run makes one base (the one
``create`` of the spec) and one template; the warm run adopts both and should make **zero**
creates.  Printed per run: wall clock, creates and clones (from the simulator's operation log),
the time to the first test (from the plugin's JSON report), and, for the warm run, that time
against one fresh machine's own clone + start + ready (median over the run's machines, same
report): the first test should start within about that.

``--short`` (CI): -n 2 only, 4 tests, scale 0.1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from _common import (
    DEFAULT_DEPLOY,
    Bench,
    PytestRun,
    add_common_args,
    describe_model,
    ratio,
    run_pytest,
)


def first_test(run: PytestRun) -> float | None:
    value = run.report().get("time_to_first_test")
    return float(value) if value is not None else None


def fresh_machine_cost(run: PytestRun) -> float | None:
    """Median clone + start + ready of the run's fresh (test) machines."""
    costs = [
        sum(m["phases"].get(p, 0.0) for p in ("clone", "start", "ready"))
        for m in run.report().get("machines", [])
        if m.get("kind") in ("function", "pool") and m.get("tests")
    ]
    return statistics.median(costs) if costs else None


def describe(run: PytestRun) -> str:
    ttft = first_test(run)
    return (
        f"{run.seconds:7.1f}s  creates {run.count('create')}, clones {run.count('clone')}; "
        f"time to first test {ttft:.2f}s"
        if ttft is not None
        else f"{run.seconds:7.1f}s"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_common_args(ap, short_help="CI mode: -n 2, 4 tests, scale 0.1")
    ap.add_argument("--workers", default=None, help="xdist worker counts (default 1,2,4)")
    ap.add_argument("--tests", type=int, default=None, help="tests in the suite (default 16)")
    args = ap.parse_args()
    workers = [int(w) for w in (args.workers or ("2" if args.short else "1,2,4")).split(",")]
    tests = args.tests or (4 if args.short else 16)
    scale = args.scale if args.scale is not None else (0.1 if args.short else 1.0)

    bench = Bench(latency=args.latency, scale=scale, keep=args.keep_home)
    suite_env = {"BENCH_TESTS": str(tests), "BENCH_DEPLOY": str(DEFAULT_DEPLOY)}
    try:
        bench.prepare()
        print(f"cold and warm runs with --orbstack-reuse: {tests} tests, {os.cpu_count()} CPUs")
        print(describe_model(bench))
        for n in workers:
            xdist = ["-n", str(n)] if n > 1 else []
            suite = ["fresh_plugin", "--orbstack-reuse", *xdist]
            cold = run_pytest(bench, f"cold-n{n}", suite, extra_env=suite_env)
            warm = run_pytest(bench, f"warm-n{n}", suite, extra_env=suite_env, after=cold)
            print(f"  -n {n} cold  {describe(cold)}")
            print(f"  -n {n} warm  {describe(warm)}")
            print(
                f"creates per spec, -n {n}: cold {cold.count('create')}, warm "
                f"{warm.count('create')}   [target: 1 cold, 0 warm: "
                f"{'met' if (cold.count('create'), warm.count('create')) == (1, 0) else 'NOT met'}]"
            )
            ttft, cost = first_test(warm), fresh_machine_cost(warm)
            if ttft is not None and cost:
                print(
                    f"ratio: warm time to first test / one fresh machine's clone+start+ready "
                    f"({cost:.2f}s), -n {n} = {ratio(ttft, cost)}"
                )
            if cold.seconds and warm.seconds:
                print(f"ratio: cold / warm wall, -n {n} = {ratio(cold.seconds, warm.seconds)}")
        if args.short:
            print("(short mode: small counts and scale; the figures are not the documented ones)")
    finally:
        bench.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
