"""A deploy's time alone, and while another machine is being provisioned (same run).

    python bench/deploy_parallel.py [--short] [-n 5]

Issue #11.3: one process-wide lock used to serialise every deploy, so a test's 1 s deploy waited
for whole template provisionings running in the background.  Deploys now run in their own
process each; this measures what is left of the wait.

Two simulator machines, A and B.  First the foreground deploy (a small file deploy: a handful of
commands, a file upload, a template) runs ``-n`` times on A alone.  Then a background thread
provisions machines one after the other - ``create`` B, the example role
(``examples/deploys/webapp.py``: a user, ``apt``, a template, files) on B, ``delete`` B - while
the foreground deploy runs on A again, until ``-n`` runs have overlapped a background deploy.
Printed: both medians and their ratio (target <= 1.3x).  On this shared 2-core machine some of
the ratio is plain CPU contention (two pyinfra processes, the simulator, apt in B).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

from _common import DEFAULT_DEPLOY, IMAGE, Bench, add_common_args

from pytest_orbstack.deploy import run_deploy
from pytest_orbstack.machine import Machine
from pytest_orbstack.orbctl import Orbctl

TARGET_RATIO = 1.3

FOREGROUND = """
from io import StringIO
from pyinfra import host
from pyinfra.operations import files, server

for i in range(4):
    server.shell(name=f"command {i}", commands=[f"echo {i} > /tmp/fg-{i}"])
files.put(name="upload", src=StringIO("payload\\n"), dest="/tmp/fg-upload")
files.template(name="template", src="fg.j2", dest="/tmp/fg-template", who=host.name)
"""


def timed_deploy(machine: Machine, deploy: Path) -> tuple[float, float]:
    started = time.monotonic()
    run_deploy([machine], deploy)
    return started, time.monotonic()


class Provisioner(threading.Thread):
    """Provision machines in a loop (create, deploy, delete) until stopped; keep the deploy
    phases' (start, end) times."""

    def __init__(self, client: Orbctl, deploy: Path) -> None:
        super().__init__(name="provisioner")
        self.client = client
        self.deploy = deploy
        self.stop = threading.Event()
        self.deploying = threading.Event()
        self.deploys: list[tuple[float, float]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        n = 0
        try:
            while not self.stop.is_set():
                name = f"bench-prov-{n}"
                n += 1
                self.client.create(IMAGE, name)
                try:
                    started = time.monotonic()
                    self.deploying.set()
                    run_deploy([Machine(name, self.client)], self.deploy)
                    self.deploys.append((started, time.monotonic()))
                finally:
                    self.deploying.clear()
                    self.client.delete(name)
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            self.deploying.set()

    def overlapped(self, start: float, end: float) -> bool:
        """[start, end] lies within one background deploy."""
        return any(s <= start and end <= e for s, e in self.deploys)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_common_args(ap, short_help="scale the latency model by 0.1")
    ap.add_argument("-n", type=int, default=5, help="foreground deploys per phase (default 5)")
    args = ap.parse_args()
    scale = args.scale if args.scale is not None else (0.1 if args.short else 1.0)
    bench = Bench(args.latency, scale, keep=args.keep_home)
    try:
        bench.prepare()
        home, env = bench.home("parallel")
        client = Orbctl(bench.exe, env={k: v for k, v in env.items() if k.startswith("ORBSIM_")})
        deploy_dir = home / "deploy"
        deploy_dir.mkdir()
        foreground = deploy_dir / "foreground.py"
        foreground.write_text(FOREGROUND)
        (deploy_dir / "fg.j2").write_text("rendered for {{ who }}\n")
        client.create(IMAGE, "bench-fg")
        machine = Machine("bench-fg", client)
        timed_deploy(machine, foreground)  # warm-up: first-run costs are not the question

        alone = [
            end - start for start, end in (timed_deploy(machine, foreground) for _ in range(args.n))
        ]

        provisioner = Provisioner(client, DEFAULT_DEPLOY)
        provisioner.start()
        during: list[float] = []
        tries = 0
        try:
            while len(during) < args.n and tries < args.n * 6:
                provisioner.deploying.wait()
                if provisioner.error is not None:
                    raise provisioner.error
                tries += 1
                start, end = timed_deploy(machine, foreground)
                deadline = time.monotonic() + 600
                while not provisioner.overlapped(start, end) and provisioner.deploying.is_set():
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.1)  # the background deploy's end is known once it ends
                if provisioner.overlapped(start, end):
                    during.append(end - start)
        finally:
            provisioner.stop.set()
            provisioner.join()
        if provisioner.error is not None:
            raise provisioner.error
        client.delete("bench-fg")
    finally:
        bench.cleanup()

    if len(during) < args.n:
        print(f"only {len(during)} of {tries} foreground deploys overlapped a background one")
        if not during:
            return 1
    alone_s, during_s = statistics.median(alone), statistics.median(during)
    bg = [e - s for s, e in provisioner.deploys]
    print(f"background provisioning deploy (webapp role): median {statistics.median(bg):.2f} s")
    print(f"deploy alone:                       {alone_s:.2f} s (median of {len(alone)})")
    print(
        f"deploy during another provisioning: {during_s:.2f} s (median of {len(during)}, each "
        f"inside a background deploy)"
    )
    ratio = during_s / alone_s
    verdict = "ok" if ratio <= TARGET_RATIO else "over target"
    print(f"ratio: {ratio:.2f}x (target <= {TARGET_RATIO}x: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
