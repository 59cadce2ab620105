"""What orbsim's machines cost: the LXC runtime against the old home-made one, same run.

    python bench/sim_costs.py [-n 5] [--runs 20] [--old-ref 5522d7f^] [--no-old]

Measures create, clone, start (to ready: for LXC machines ``systemctl is-system-running
--wait`` says running), ``run true``, stop and delete as medians over ``-n`` rounds, each in a
throw-away ``ORBSIM_HOME`` (the base caches are shared and built first if needed, untimed), and
the memory of one idle machine (RSS and PSS of its processes; for LXC also its monitor).

The old runtime (unshare + a Python holder, no init, host network) is no longer in this tree:
it is exported from git (``--old-ref``, default ``5522d7f^``: the last commit with it, the
holder being deleted in 5522d7f) into a temporary directory and run
from there, interleaved round by round with the current one, so both see the same noise.
Printed: medians, ratios LXC/old (no slower = ratio <= 1), and the start-to-ready target
(median <= 1.5 s).  This machine is noisy; only ratios and medians are meaningful.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAUNCHER = (
    "#!{python}\nimport sys\nsys.path.insert(0, {path!r})\n"
    "from orbsim.cli import main\nsys.exit(main())\n"
)
# the last commit with the old holder runtime (5522d7f replaced it with LXC)
OLD_REF = "5522d7f^"
OPS = ("create", "clone", "start", "run true", "stop", "delete")


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr}")
    return dt


def _smaps(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def _pidns_members(pid: int) -> list[int]:
    try:
        ns = os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return []
    out = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                if os.readlink(f"/proc/{e}/ns/pid") == ns:
                    out.append(int(e))
            except OSError:
                continue
    return out


class Runtime:
    def __init__(self, label: str, pkg_parent: Path, root: Path) -> None:
        self.label = label
        self.root = root
        self.exe = root / "orbsim"
        root.mkdir(parents=True, exist_ok=True)
        self.exe.write_text(LAUNCHER.format(python=sys.executable, path=str(pkg_parent)))
        self.exe.chmod(0o755)
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("ORBSIM_") or k in ("ORBSIM_CACHE", "ORBSIM_MIRROR")
        }
        self.env["ORBSIM_HOME"] = str(root / "home")
        self.costs: dict[str, list[float]] = {k: [] for k in OPS}
        self.mem: list[tuple[int, int, int]] = []  # (rss kB, pss kB, processes)
        self.shared: list[bool] = []  # per round: other machines kept the host network up

    def cmd(self, *args: str) -> list[str]:
        return [str(self.exe), *args]

    def prepare(self) -> str | None:
        prep = subprocess.run(self.cmd("sim-prepare"), env=self.env, capture_output=True, text=True)
        return None if prep.returncode == 0 else prep.stderr.strip()

    def holder(self, name: str) -> int:
        st = json.loads((self.root / "home" / "state.json").read_text())
        rec = next(r for r in st["machines"].values() if r["name"] == name)
        return int(rec["holder"]["pid"])

    def memory(self, name: str) -> None:
        pid = self.holder(name)
        pids = _pidns_members(pid)
        # the LXC monitor (one per machine) lives outside the machine: count it too
        with open(f"/proc/{pid}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        with open(f"/proc/{ppid}/cmdline", "rb") as f:
            if f.read().startswith(b"[lxc monitor]"):
                pids.append(ppid)
        rss = pss = 0
        for p in pids:
            r, s = _smaps(p)
            rss, pss = rss + r, pss + s
        self.mem.append((rss, pss, len(pids)))

    def other_leases(self) -> int:
        """Machines of other homes on orbsim's host network (LXC only; 0 for the old runtime).

        With none, this round's first start makes the network and its last stop or delete
        removes it (bridge, nft table, dnsmasq): costs a shared network does not have."""
        ldir = Path(os.environ.get("ORBSIM_RUNDIR") or "/run/orbsim") / "net" / "leases"
        n = 0
        with contextlib.suppress(OSError):
            for p in ldir.iterdir():
                with contextlib.suppress(OSError, ValueError):
                    if json.loads(p.read_text()).get("home") != self.env["ORBSIM_HOME"]:
                        n += 1
        return n

    def round(self, i: int, runs: int) -> None:
        a, b = f"bench-{i}", f"bench-{i}-clone"
        c = self.costs
        self.shared.append(self.other_leases() > 0)
        c["create"].append(timed(self.cmd("create", "debian", a), self.env))
        c["stop"].append(timed(self.cmd("stop", a), self.env))
        c["clone"].append(timed(self.cmd("clone", a, b), self.env))
        c["start"].append(timed(self.cmd("start", b), self.env))
        time.sleep(1.0)  # let the machine idle before measuring its memory
        self.memory(b)
        for _ in range(runs):
            c["run true"].append(timed(self.cmd("run", "-m", b, "true"), self.env))
        c["delete"].append(timed(self.cmd("delete", "-f", a, b), self.env))

    def cleanup(self) -> None:
        subprocess.run(self.cmd("delete", "-a", "-f"), env=self.env, capture_output=True)


def export_old(ref: str, dest: Path) -> Path | None:
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "orbsim"], capture_output=True
    )
    if archive.returncode != 0:
        print(f"cannot export {ref}: {archive.stderr.decode().strip()}")
        return None
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest if (dest / "orbsim" / "holder.py").exists() else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=5, help="rounds (default 5)")
    ap.add_argument("--runs", type=int, default=20, help="`run true` calls per round (default 20)")
    ap.add_argument(
        "--old-ref",
        default=OLD_REF,
        help=f"git ref of the old runtime (default {OLD_REF}: the last commit with it)",
    )
    ap.add_argument("--no-old", action="store_true", help="measure the LXC runtime only")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="orbsim-bench-"))
    runtimes = [Runtime("lxc", REPO, tmp / "lxc")]
    if not args.no_old:
        old_src = export_old(args.old_ref, tmp / "old-src")
        if old_src is None:
            print(f"{args.old_ref} has no holder runtime: measuring LXC only")
        else:
            runtimes.append(Runtime(f"old ({args.old_ref})", old_src, tmp / "old"))
    try:
        for rt in runtimes:
            why = rt.prepare()
            if why:
                print(f"cannot benchmark {rt.label}: {why}")
                return 1
        for i in range(args.n):
            for rt in runtimes:  # interleaved: both runtimes see the same noise
                rt.round(i, args.runs)
    finally:
        for rt in runtimes:
            rt.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)

    med = {rt.label: {k: statistics.median(v) for k, v in rt.costs.items()} for rt in runtimes}
    print(
        f"orbsim machine costs, median of {args.n} rounds ({args.runs} `run true` per round), "
        f"{os.cpu_count()} CPUs"
    )
    header = f"  {'':<10}" + "".join(f"{rt.label:>16}" for rt in runtimes)
    if len(runtimes) == 2:
        header += f"{'lxc/old':>10}"
    print(header)
    for k in OPS:
        line = f"  {k:<10}" + "".join(f"{med[rt.label][k] * 1000:13.1f} ms" for rt in runtimes)
        if len(runtimes) == 2:
            ratio = med["lxc"][k] / med[runtimes[1].label][k]
            line += f"{ratio:9.2f}x"
        print(line)
    for rt in runtimes:
        rss = statistics.median(m[0] for m in rt.mem) / 1024
        pss = statistics.median(m[1] for m in rt.mem) / 1024
        procs = statistics.median(m[2] for m in rt.mem)
        print(
            f"  idle machine memory ({rt.label}): RSS {rss:.1f} MB, PSS {pss:.1f} MB, "
            f"{procs:.0f} processes"
        )
    shared = sum(runtimes[0].shared)
    print(
        "  host network (LXC): "
        + (
            "made and removed in every round (no other machines on the host)"
            if not shared
            else f"kept up by other machines in {shared} of {args.n} rounds"
        )
    )
    ready = med["lxc"]["start"]
    print(
        f"  target: LXC start-to-ready (systemd running) median {ready:.2f} s <= 1.5 s: "
        f"{'met' if ready <= 1.5 else 'NOT met'}"
    )
    if len(runtimes) == 2:
        slower = [k for k in OPS if med["lxc"][k] > med[runtimes[1].label][k]]
        print(
            "  target: no step slower than the old runtime: "
            + ("met" if not slower else "NOT met for " + ", ".join(slower))
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
