"""What a 3-machine module topology costs against making and deploying the machines by hand.

    python bench/topology.py [--short] [-n 2]

Two pytest runs per round, each in a fresh simulator home (same latency model): the module of
``bench/suites/topology/test_topology.py`` (``inventory={"lb": 1, "web": 2}``, ``deploy=``,
``isolation="module"``: machines prepared ahead once demand is known, the deploy once over the
inventory) and ``test_by_hand.py`` (a module fixture makes the three machines with
``orb_vm_factory_module`` one after the other, then runs the same deploy with the same groups).
Both run three tests on the machines.  Printed: the median wall time of each and their ratio
(below 1: the topology is cheaper than doing it by hand).
"""

from __future__ import annotations

import argparse
import statistics
import sys

from _common import Bench, add_common_args, describe_model, ratio, run_pytest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_common_args(ap, short_help="scale the latency model by 0.1, one round")
    ap.add_argument("-n", type=int, default=None, help="rounds (default 3; --short: 1)")
    args = ap.parse_args()
    scale = args.scale if args.scale is not None else (0.1 if args.short else 1.0)
    rounds = args.n or (1 if args.short else 3)
    bench = Bench(args.latency, scale, keep=args.keep_home)
    print(describe_model(bench))
    topology: list[float] = []
    by_hand: list[float] = []
    try:
        bench.prepare()
        for index in range(rounds):
            hand = run_pytest(bench, f"hand-{index}", ["topology/test_by_hand.py"])
            topo = run_pytest(bench, f"topology-{index}", ["topology/test_topology.py"])
            by_hand.append(hand.seconds)
            topology.append(topo.seconds)
            print(
                f"round {index + 1}: by hand {hand.seconds:.1f}s ({hand.creations} machines "
                f"made), topology {topo.seconds:.1f}s ({topo.creations} machines made)"
            )
    finally:
        bench.cleanup()
    hand_s, topo_s = statistics.median(by_hand), statistics.median(topology)
    print(f"by hand (median of {rounds}): {hand_s:.1f}s; topology: {topo_s:.1f}s")
    print(f"ratio: topology / by hand = {ratio(topo_s, hand_s)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
