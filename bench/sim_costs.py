"""What the orbsim simulator itself costs, once its base image is cached.

    python bench/sim_costs.py [-n 5] [--keep-home]

Measures create, clone, start, ``run true``, stop and delete as medians over ``-n`` rounds in
a throw-away ``ORBSIM_HOME`` (the base cache ``ORBSIM_CACHE`` is shared and built first if
needed, which is not timed).  This machine is noisy, so the ``run`` cost is also reported as a
ratio against baselines measured in the same rounds: ``python -c pass`` (the interpreter start
every CLI call pays) and a bare ``nsenter ... true`` into the same machine.

Targets: create and clone under 1 s, ``run true`` under 50 ms of CLI overhead + nsenter (the
overhead is ``run`` minus the ``python -c pass`` baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAUNCHER = "#!{python}\nimport sys\nfrom orbsim.cli import main\nsys.exit(main())\n"


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr}")
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=5, help="rounds (default 5)")
    ap.add_argument("--runs", type=int, default=20, help="`run true` calls per round (default 20)")
    ap.add_argument("--keep-home", action="store_true", help="do not delete the temporary home")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="orbsim-bench-"))
    exe = root / "orbsim"
    exe.write_text(LAUNCHER.format(python=sys.executable))
    exe.chmod(0o755)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ORBSIM_") or k in ("ORBSIM_CACHE", "ORBSIM_MIRROR")
    }
    env["ORBSIM_HOME"] = str(root / "home")
    orbsim = [str(exe)]
    prep = subprocess.run([*orbsim, "sim-prepare"], env=env, capture_output=True, text=True)
    if prep.returncode != 0:
        print(f"cannot benchmark: {prep.stderr.strip()}")
        return 1

    costs: dict[str, list[float]] = {
        k: []
        for k in (
            "create",
            "clone",
            "start",
            "run true",
            "stop",
            "delete",
            "python -c pass",
            "nsenter true",
        )
    }
    try:
        for i in range(args.n):
            a, b = f"bench-{i}", f"bench-{i}-clone"
            costs["create"].append(timed([*orbsim, "create", "debian", a], env))
            costs["clone"].append(timed([*orbsim, "clone", a, b], env))
            costs["start"].append(timed([*orbsim, "start", b], env))
            st = json.loads((root / "home" / "state.json").read_text())
            pid = next(r for r in st["machines"].values() if r["name"] == b)["holder"]["pid"]
            nsenter = ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-p", "-r", "-w", "--", "true"]
            for _ in range(args.runs):
                # interleave so that noise hits run and its baselines alike
                costs["run true"].append(timed([*orbsim, "run", "-m", b, "true"], env))
                costs["python -c pass"].append(timed([sys.executable, "-c", "pass"], env))
                costs["nsenter true"].append(timed(nsenter, env))
            costs["stop"].append(timed([*orbsim, "stop", b], env))
            costs["delete"].append(timed([*orbsim, "delete", "-f", a, b], env))
    finally:
        subprocess.run([*orbsim, "delete", "-a", "-f"], env=env, capture_output=True)
        if not args.keep_home:
            shutil.rmtree(root, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in costs.items()}
    print(
        f"orbsim costs, median of {args.n} rounds ({args.runs} `run true` per round), "
        f"{os.cpu_count()} CPUs"
    )
    for k in ("create", "clone", "start", "run true", "stop", "delete"):
        print(f"  {k:<10} {med[k] * 1000:8.1f} ms")
    print("baselines measured in the same rounds:")
    print(f"  python -c pass  {med['python -c pass'] * 1000:8.1f} ms")
    print(f"  nsenter true    {med['nsenter true'] * 1000:8.1f} ms")
    overhead = med["run true"] - med["python -c pass"]
    print(
        f"run true / python -c pass = {med['run true'] / med['python -c pass']:.2f}x; "
        f"overhead beyond interpreter start = {overhead * 1000:.1f} ms"
    )
    checks = [
        ("create < 1 s", med["create"] < 1.0),
        ("clone < 1 s", med["clone"] < 1.0),
        ("run overhead (run - python start) < 50 ms", overhead < 0.05),
        ("run true < 50 ms absolute", med["run true"] < 0.05),
    ]
    for label, ok in checks:
        print(f"  target {label}: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
