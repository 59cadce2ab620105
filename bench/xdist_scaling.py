"""xdist scaling: the fresh-machine and session-machine suites with ``-n 1, 2, 4``.

    python bench/xdist_scaling.py [--workers 1,2,4] [--fresh-tests 16] [--session-tests 500]
                                  [--pool-size 2] [--scale 1] [--short]

Runs the plugin suites of ``bench/fresh_machines.py`` (``bench/suites/fresh_plugin``: one
template, a clone per test) and ``bench/session_overhead.py`` (``bench/suites/session_plugin``:
one session machine for every worker) with each worker count, each run in a fresh simulator home,
and prints per run the wall clock and the machines made, counted in the simulator's operation log
(successful ``create`` and ``clone`` invocations): whatever the worker count, the fresh suite
should make 1 template + one clone per test, and the session suite exactly 1 machine.  Ratios:
time with ``-n 1`` / time with ``-n K`` (this machine has ``os.cpu_count()`` CPUs; the simulated
latencies are sleeps, so they overlap even beyond the CPU count).

``--short`` (CI): workers 1,2; 4 fresh tests, 40 session tests, scale 0.1.
"""

from __future__ import annotations

import argparse
import os
import sys

from _common import (
    DEFAULT_DEPLOY,
    Bench,
    PytestRun,
    add_common_args,
    describe_model,
    option_accepted,
    ratio,
    run_pytest,
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_common_args(ap, short_help="CI mode: -n 1,2; 4 fresh tests, 40 session tests, scale 0.1")
    ap.add_argument("--workers", default=None, help="xdist worker counts (default 1,2,4)")
    ap.add_argument("--fresh-tests", type=int, default=None, help="default 16")
    ap.add_argument("--session-tests", type=int, default=None, help="default 500")
    ap.add_argument(
        "--pool-size", type=int, default=2, help="--orbstack-pool-size (default 2, the plugin's)"
    )
    args = ap.parse_args()
    workers = [int(w) for w in (args.workers or ("1,2" if args.short else "1,2,4")).split(",")]
    fresh_tests = args.fresh_tests or (4 if args.short else 16)
    session_tests = args.session_tests or (40 if args.short else 500)
    scale = args.scale if args.scale is not None else (0.1 if args.short else 1.0)

    bench = Bench(latency=args.latency, scale=scale, keep=args.keep_home)
    # fresh: the template, one clone per test, and one replica of the template per xdist
    # worker (each worker clones from its own replica); session: one machine.
    suites = {
        "fresh": ("fresh_plugin", fresh_tests, lambda n: 1 + fresh_tests + n),
        "session": ("session_plugin", session_tests, lambda n: 1),
    }
    try:
        bench.prepare()
        print(f"xdist scaling: -n {','.join(map(str, workers))}, {os.cpu_count()} CPUs")
        print(describe_model(bench))
        option = f"--orbstack-pool-size={args.pool_size}"
        if not option_accepted(bench, option):
            print(f"{option} is not accepted by the plugin")
            return 1
        extra = [option]
        print(f"plugin option {option}")
        for suite, (path, tests, expected) in suites.items():
            env = {"BENCH_TESTS": str(tests), "BENCH_DEPLOY": str(DEFAULT_DEPLOY)}
            runs: dict[int, PytestRun] = {}
            print(f"{suite} suite: {tests} tests (expected machines made: {expected(1)} + ...)")
            for n in workers:
                label = f"{suite}-n{n}"
                run = run_pytest(bench, label, [path, "-n", str(n), *extra], extra_env=env)
                runs[n] = run
                made = run.creations
                print(
                    f"  -n {n}: {run.seconds:7.1f}s  machines made {made} "
                    f"(create {run.count('create')}, clone {run.count('clone')}), "
                    f"deletes {run.count('delete')}"
                    + ("" if made == expected(n) else f"   [expected {expected(n)}]")
                )
                failed = run.failed_calls()
                if failed:
                    print(
                        "        failed orbctl calls (then retried): "
                        + ", ".join(f"{cmd} {k}" for cmd, k in sorted(failed.items()))
                    )
            base = runs[workers[0]].seconds
            for n in workers[1:]:
                print(
                    f"ratio: {suite} -n {workers[0]} / -n {n} = {ratio(base, runs[n].seconds)}"
                    f"   (machines made: {runs[workers[0]].creations} -> {runs[n].creations})"
                )
        if args.short:
            print("(short mode: small counts and scale; the figures are not the documented ones)")
    finally:
        bench.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
