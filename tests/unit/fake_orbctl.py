#!/usr/bin/env python3
"""A tiny stand-in for ``orbctl`` used by the unit tests.

It appends its argv (and stdin, if any) as one JSON line to ``$FAKE_ORBCTL_DIR/calls.jsonl`` and
answers from ``$FAKE_ORBCTL_DIR/script.json``: a list of responses consumed in order, each
``{"cmd": "create", "rc": 1, "stdout": "", "stderr": "...", "sleep": 0, "spawn_sleep": 0}``.
A response whose ``cmd`` does not match the call's subcommand is an error (exit 99), so a test
fails loudly when the client makes a call it did not expect.  With no responses left it exits 98.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

state = Path(os.environ["FAKE_ORBCTL_DIR"])
argv = sys.argv[1:]
stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
with open(state / "calls.jsonl", "a") as fh:
    fh.write(json.dumps({"argv": argv, "stdin": stdin}) + "\n")

lock = state / "script.json"
script = json.loads(lock.read_text())
if not script:
    sys.stderr.write(f"fake orbctl: unexpected call {argv}\n")
    sys.exit(98)
response = script.pop(0)
# Atomically: a call killed right here (a timeout, an abort) must not leave a torn script.
tmp = lock.with_name(f"script.{os.getpid()}.tmp")
tmp.write_text(json.dumps(script))
os.replace(tmp, lock)
if response.get("cmd") and (not argv or argv[0] != response["cmd"]):
    sys.stderr.write(f"fake orbctl: expected {response['cmd']!r}, got {argv}\n")
    sys.exit(99)
if response.get("spawn_sleep"):
    # A grandchild in our process group: a timeout must kill it too.
    child = subprocess.Popen(
        [sys.executable, "-c", f"import time; time.sleep({response['spawn_sleep']})"]
    )
    (state / "grandchild.pid").write_text(str(child.pid))
if response.get("sleep"):
    time.sleep(response["sleep"])
sys.stdout.write(response.get("stdout", ""))
sys.stderr.write(response.get("stderr", ""))
sys.exit(response.get("rc", 0))
