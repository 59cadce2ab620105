"""Fresh machines: the plugin (base/template + clone) against the pyinfra-orbstack pattern.

    python bench/fresh_machines.py [--tests 16] [--scale 1] [--pool-sizes 0,2,auto] [--plain]
                                   [--short]

``--plain``: fresh machines without a deploy (the baseline is then create-per-test; the plugin
clones one pristine base).

A suite of ``--tests`` tests, each needing a fresh machine provisioned by the same pyinfra deploy
(``examples/deploys/webapp.py``) and running the same body (``bench/suites/checks.py``), is run on
the simulator with a latency model approximating OrbStack, each run in a fresh simulator home:

* baseline - the seed project's pattern (``bench/suites/fresh_seed``, ``-p no:orbstack``): per
  test, serially, create with retry, wait ready (poll ``info`` every 0.5 s), deploy, body, delete;
* ours - the plugin, ``isolation="function", deploy=...`` (``bench/suites/fresh_plugin``): one
  template provisioned once, a copy-on-write clone per test; serially and with ``-n 2``, with
  ``--orbstack-pool-size`` 0 (off) and 2 (when the plugin accepts the option);
* the pipelined bound, from parts timed in the same run by direct ``orbsim`` calls and
  ``run_deploy``: ``create + deploy + clone + start + delete + sum(test bodies) / 2`` - one
  template made and provisioned, then the 16 bodies spread over 2 workers, and only one clone,
  start and delete left exposed (the rest hidden behind bodies by a perfect pipeline).  Bodies
  are the baseline's (serial, uncontended); clone, start and delete are medians of 3 rounds.
  Because the deploy refreshes apt indexes over the network, its time varies between
  measurements; the bound is therefore also printed with each run's own template create +
  deploy (from the plugin's JSON report) in place of the directly timed ones.

Printed: wall times, machines created, and the ratios (``ratio:`` lines).  Targets: baseline /
ours(-n 2) >= 8x, ours(-n 2) / bound <= 1.5x.  ``--short`` (CI): 4 tests, scale 0.1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from _common import (
    DEFAULT_DEPLOY,
    IMAGE,
    Bench,
    PytestRun,
    add_common_args,
    describe_model,
    option_accepted,
    ratio,
    run_pytest,
    timed,
)

from pytest_orbstack.deploy import run_deploy
from pytest_orbstack.machine import Machine
from pytest_orbstack.orbctl import Orbctl

WORKERS = 2


def measure_bound_parts(bench: Bench, deploy: Path | None, rounds: int) -> dict[str, float]:
    """Time one create, one deploy (none with ``--plain``), and (median of ``rounds``) clone,
    start, delete."""
    home, env = bench.home("bound")
    client = Orbctl(bench.exe, env={k: v for k, v in env.items() if k.startswith("ORBSIM_")})
    tpl = "bound-tpl"
    parts: dict[str, float] = {}
    parts["create"] = timed(client.create, IMAGE, tpl)
    if deploy is not None:
        parts["deploy"] = timed(run_deploy, [Machine(name=tpl, client=client)], str(deploy))
    else:
        parts["deploy"] = 0.0
    parts["stop (not in bound)"] = timed(client.stop, tpl)
    samples: dict[str, list[float]] = {"clone": [], "start": [], "delete": []}
    for i in range(rounds):
        name = f"bound-c{i}"
        samples["clone"].append(timed(client.clone, tpl, name))
        samples["start"].append(timed(client.start, name))
        samples["delete"].append(timed(client.delete, name))
    for key, values in samples.items():
        parts[key] = statistics.median(values)
    client.delete(tpl)
    return parts


def template_make(run: PytestRun) -> float | None:
    """This run's base create + template deploy, from the plugin's JSON report."""
    phases = {m.get("kind"): m.get("phases", {}) for m in run.report().get("machines", [])}
    if "template" not in phases:
        return None
    create = phases.get("base", {}).get("create", 0.0) + phases["template"].get("create", 0.0)
    return float(create + phases["template"].get("deploy", 0.0))


def describe_run(run: PytestRun) -> str:
    report = run.report()
    phases: dict[str, float] = {}
    template = ""
    for m in report.get("machines", []):
        if m.get("kind") in ("template", "base"):
            template += f", {m['kind']} " + " ".join(
                f"{k} {v:.1f}s" for k, v in sorted(m.get("phases", {}).items())
            )
            continue
        for k, v in m.get("phases", {}).items():
            phases[k] = phases.get(k, 0.0) + v
    fresh = " ".join(f"{k} {v:.1f}s" for k, v in sorted(phases.items()))
    bodies = run.bodies()
    text = (
        f"{run.seconds:7.1f}s  creates {run.count('create')}, clones {run.count('clone')}, "
        f"deletes {run.count('delete')}; bodies {sum(bodies):.1f}s over {len(bodies)} tests; "
        f"lifecycle orbctl calls per test {run.calls_per_test():.2f}"
    )
    if report:
        text += f"\n{'':12}plugin phases: fresh machines (sum) {fresh or '-'}{template}"
    phases = run.phases()
    if phases is not None:
        first, last, end = phases
        text += (
            f"\n{'':12}timeline: first test body at {first:.1f}s, last one ends at {last:.1f}s, "
            f"run ends at {end:.1f}s (tail {end - last:.1f}s)"
        )
    failed = run.failed_calls()
    if failed:
        text += f"\n{'':12}failed orbctl calls (then retried): " + ", ".join(
            f"{cmd} {n}" for cmd, n in sorted(failed.items())
        )
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_common_args(ap, short_help="CI mode: 4 tests, scale 0.1, 1 bound round")
    ap.add_argument("--tests", type=int, default=None, help="tests in the suite (default 16)")
    ap.add_argument("--deploy", type=Path, default=DEFAULT_DEPLOY, help="the pyinfra deploy")
    ap.add_argument(
        "--plain", action="store_true", help="fresh machines without a deploy (no template)"
    )
    ap.add_argument(
        "--pool-sizes",
        default=None,
        help="--orbstack-pool-size values for 'ours' (default 0,2,auto; --short: auto; sizes "
        "the plugin does not accept are reported and skipped)",
    )
    args = ap.parse_args()
    tests = args.tests or (4 if args.short else 16)
    scale = args.scale if args.scale is not None else (0.1 if args.short else 1.0)
    rounds = 1 if args.short else 3
    sizes = args.pool_sizes or ("auto" if args.short else "0,2,auto")
    pools = [p.strip() for p in sizes.split(",") if p.strip()]
    deploy = None if args.plain else args.deploy.resolve()

    bench = Bench(latency=args.latency, scale=scale, keep=args.keep_home)
    suite_env = {"BENCH_TESTS": str(tests), "BENCH_DEPLOY": str(deploy or "")}
    try:
        bench.prepare()
        what = "unprovisioned" if deploy is None else f"provisioned, deploy {deploy.name}"
        print(f"fresh machines ({what}): {tests} tests, {os.cpu_count()} CPUs")
        print(describe_model(bench))

        parts = measure_bound_parts(bench, deploy, rounds)
        print("pipelined-bound parts (direct orbsim calls / run_deploy, same run):")
        for key, value in parts.items():
            print(f"  {key:<20} {value:7.2f}s")

        runs: dict[str, PytestRun] = {}
        print("runs (wall clock of the whole pytest process):")
        runs["baseline"] = run_pytest(
            bench, "baseline", ["fresh_seed"], extra_env=suite_env, plugin=False
        )
        print(f"  {'baseline':<10}  {describe_run(runs['baseline'])}")
        for pool in pools:
            option = f"--orbstack-pool-size={pool}"
            if not option_accepted(bench, option):
                print(f"  pool {pool}: {option} is not accepted by the plugin; skipped")
                continue
            for workers in (1, WORKERS):
                label = f"pool{pool}-{'serial' if workers == 1 else f'n{workers}'}"
                xdist = ["-n", str(workers)] if workers > 1 else []
                run = run_pytest(
                    bench, label, ["fresh_plugin", option, *xdist], extra_env=suite_env
                )
                runs[label] = run
                print(f"  {label:<10}  {describe_run(run)}")

        bodies = runs["baseline"].bodies()
        body_share = sum(bodies) / WORKERS
        bound = (
            parts["create"] + parts["deploy"] + parts["clone"] + parts["start"] + parts["delete"]
        ) + body_share
        target = 10 if deploy is None else 12
        print(
            f"pipelined bound (-n {WORKERS}) = create {parts['create']:.2f} + deploy "
            f"{parts['deploy']:.2f} + clone {parts['clone']:.2f} + start {parts['start']:.2f} + "
            f"delete {parts['delete']:.2f} + bodies {sum(bodies):.2f}/{WORKERS} = {bound:.2f}s"
        )
        base = runs["baseline"].seconds
        for pool in pools:
            serial, par = runs.get(f"pool{pool}-serial"), runs.get(f"pool{pool}-n{WORKERS}")
            if serial is None or par is None:
                continue
            tag = f"pool {pool}"
            print(f"ratio: baseline / ours serial ({tag}) = {ratio(base, serial.seconds)}")
            print(
                f"ratio: baseline / ours -n {WORKERS} ({tag}) = {ratio(base, par.seconds)}"
                f"   [target >= {target}x: {'met' if base / par.seconds >= target else 'NOT met'}]"
            )
            print(
                f"ratio: ours -n {WORKERS} ({tag}) / pipelined bound = "
                f"{ratio(par.seconds, bound)}"
                f"   [target <= 1.2x: {'met' if par.seconds / bound <= 1.2 else 'NOT met'}]"
            )
            print(
                f"orbctl calls per fresh machine, -n {WORKERS} ({tag}): "
                f"{par.calls_per_test():.2f}   [target <= 5: "
                f"{'met' if par.calls_per_test() <= 5 else 'NOT met'}]"
            )
            phases = par.phases()
            if phases is not None:
                first, last, end = phases
                ahead = parts["create"] + parts["deploy"] + parts["clone"] + parts["start"]
                print(
                    f"  where -n {WORKERS} ({tag}) loses against the bound: first test "
                    f"{first:.1f}s vs {ahead:.1f}s, tests {last - first:.1f}s vs "
                    f"{body_share:.1f}s, tail {end - last:.1f}s vs {parts['delete']:.1f}s"
                )
            made = template_make(par)
            if made is not None:
                # the deploy refreshes apt indexes over the network: its time varies between
                # measurements, so also compare with this run's own template create + deploy
                own = bound - parts["create"] - parts["deploy"] + made
                print(
                    f"ratio: ours -n {WORKERS} ({tag}) / pipelined bound with this run's template "
                    f"create+deploy ({made:.2f}s; bound {own:.2f}s) = {ratio(par.seconds, own)}"
                )
        if args.short:
            print("(short mode: small counts and scale; the figures are not the documented ones)")
    finally:
        bench.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
