#!/usr/bin/env python3
"""A stateful stand-in for ``orbctl``: a model of OrbStack's machine table, no machines.

Where ``fake_orbctl.py`` answers from a script in call order (exact, but only for one caller
at a time), this model keeps machines in ``$MODEL_ORBCTL_DIR/machines.json`` and answers every
call from that state under one lock, so concurrent callers - the supply's background threads,
two processes - get consistent answers in whatever order they come.  No root, no simulator:
``Supply`` and ``MachineManager`` tests run on macOS too.

* ``create [flags] IMAGE NAME`` makes a running machine, ``clone SRC NAME`` a stopped one
  (SRC must exist and be stopped, as on OrbStack 2.x), ``start``/``stop NAME...`` change state,
  ``delete -f NAME...`` removes them (a missing name: ``machine not found``, nothing deleted), an
  id in ``delete`` panics like 2.2.3 (exit 2), ``info -f json NAME`` and ``list -f json`` report
  them, ``run -m NAME ...`` answers a machine's readiness (``failed=`` / ``os=``) and exits 0,
  ``version`` says 2.2.3.
* ``faults.json``: ``{"clone": [{"rc": 1, "stderr": "..."}, ...]}`` - the next calls of that
  command fail so (consumed in order) before doing anything.
* ``latency.json``: ``{"clone": 0.05}`` - seconds each call of the command sleeps (outside the
  lock, so calls really overlap).
* Every call is appended to ``calls.jsonl`` as ``{"argv": [...], "rc": N}``.
"""

import fcntl
import json
import os
import re
import sys
import time
from pathlib import Path

state = Path(os.environ["MODEL_ORBCTL_DIR"])
argv = sys.argv[1:]
cmd = argv[0] if argv else ""
NOT_FOUND = "[-32098] machine not found: '{}'\n"
READY = "failed=\nos=debian bookworm 12\n"
ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def load(name: str, default: object) -> object:
    try:
        return json.loads((state / name).read_text())
    except (OSError, ValueError):
        return default


def save(name: str, data: object) -> None:
    tmp = state / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data))
    os.replace(tmp, state / name)


def answer(machines: dict, faults: dict) -> tuple[int, str, str]:
    queued = faults.get(cmd) or []
    if queued:
        fault = queued.pop(0)
        return fault.get("rc", 1), fault.get("stdout", ""), fault.get("stderr", "")
    names = [a for a in argv[1:] if not a.startswith("-")]
    if cmd == "version":
        return 0, "Version: 2.2.3 (2020300)\nCommit: 0000000 (v2.2.3)\n", ""
    if cmd == "status":
        return 0, "Running\n", ""
    if cmd == "create":
        image, name = names[-2], names[-1]
        if name in machines:
            return 1, "", f"[-32098] create '{name}': machine already exists: '{name}'\n"
        distro, _, version = image.partition(":")
        machines[name] = {"state": "running", "distro": distro, "version": version or "bookworm"}
        return 0, "", ""
    if cmd == "clone":
        source, name = names[0], names[1]
        if source not in machines:
            return 1, "", NOT_FOUND.format(source)
        if name in machines:
            return 1, "", f"[-32098] clone '{name}': machine already exists: '{name}'\n"
        machines[name] = {**machines[source], "state": "stopped"}
        return 0, "", ""
    if cmd in ("start", "stop"):
        for name in names:
            if name not in machines:
                return 1, "", NOT_FOUND.format(name)
        for name in names:
            machines[name]["state"] = "running" if cmd == "start" else "stopped"
        return 0, "", ""
    if cmd == "delete":
        for name in names:
            if ULID.match(name):
                return 2, "", "panic: runtime error: invalid memory address\n\ngoroutine 1\n"
            if name not in machines:
                return 1, "", NOT_FOUND.format(name)
        for name in names:
            del machines[name]
        return 0, "", ""
    if cmd == "info":
        name = names[-1]
        if name not in machines:
            return 1, "", NOT_FOUND.format(name)
        return 0, json.dumps(info(name, machines[name])), ""
    if cmd == "list":
        return 0, json.dumps([info(n, m)["record"] for n, m in sorted(machines.items())]), ""
    if cmd == "run":
        name = argv[argv.index("-m") + 1]
        if name not in machines:
            return 1, "", NOT_FOUND.format(name)
        if machines[name]["state"] != "running":
            machines[name]["state"] = "running"  # run starts a stopped machine, as orbctl does
        return 0, READY, ""
    return 1, "", f"model orbctl: no model for {argv}\n"


def info(name: str, m: dict) -> dict:
    record = {
        "id": "01J" + str(abs(hash(name)) % 10**8).rjust(8, "0"),
        "name": name,
        "builtin": False,
        "state": m["state"],
        "image": {"distro": m["distro"], "version": m["version"], "arch": "amd64",
                  "variant": "default"},
        "config": {"isolated": False, "default_username": "u"},
    }  # fmt: skip
    out: dict = {"record": record, "disk_size": 1}
    if m["state"] == "running":
        out["ip4"] = "192.168.139.2"
    return out


delay = load("latency.json", {}).get(cmd, 0)
if delay:
    time.sleep(delay)
with open(state / "model.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    machines = load("machines.json", {})
    faults = load("faults.json", {})
    rc, out, err = answer(machines, faults)
    save("machines.json", machines)
    save("faults.json", faults)
    with open(state / "calls.jsonl", "a") as fh:
        fh.write(json.dumps({"argv": argv, "rc": rc}) + "\n")
sys.stdout.write(out)
sys.stderr.write(err)
sys.exit(rc)
