"""Real machine semantics: isolation, lifecycle, run, push/pull, clone, export/import."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.orbsim.conftest import Sim


def test_isolation_and_hostname(sim: Sim, machine: str) -> None:
    other = sim.create()
    marker = f"/tmp/orbsim-marker-{os.getpid()}-{time.monotonic_ns()}"
    sim.ok("run", "-m", machine, "sh", "-c", f"echo secret > {marker}")
    assert sim.ok("run", "-m", machine, "cat", marker).stdout == "secret\n"
    assert sim("run", "-m", other, "test", "-e", marker).returncode == 1
    assert not os.path.exists(marker)
    assert sim.ok("run", "-m", machine, "hostname").stdout == f"{machine}\n"
    assert sim.ok("run", "-m", other, "cat", "/etc/hostname").stdout == f"{other}\n"
    hosts = sim.ok("run", "-m", other, "cat", "/etc/hosts").stdout
    assert other in hosts
    # its own PID namespace: PID 1 is the holder, the host's processes are invisible
    ps = sim.ok("run", "-m", other, "-u", "root", "ps", "-e", "-o", "pid=").stdout.split()
    assert "1" in ps and len(ps) < 10
    sim.ok("delete", "-f", other)


def test_default_user_sudo_and_env(sim: Sim, machine: str) -> None:
    out = sim.ok("run", "-m", machine, "sh", "-c", 'id -un; echo "$HOME"; pwd; echo "$USER $SHELL"')
    assert out.stdout.splitlines() == ["tester", "/home/tester", "/home/tester", "tester /bin/bash"]
    res = sim.ok("run", "-m", machine, "-u", "root", "cat", "/etc/sudoers.d/orbstack")
    assert res.stdout == "tester ALL=(ALL) NOPASSWD:ALL"  # no newline, like OrbStack
    groups = sim.ok("run", "-m", machine, "id", "-Gn").stdout.split()
    assert {"tester", "adm", "sudo", "staff", "video"} <= set(groups)
    assert sim.ok("run", "-m", machine, "curl", "--version").returncode == 0
    assert sim.ok("run", "-m", machine, "sudo", "-n", "id", "-u").stdout == "0\n"
    env = sim.ok("run", "-m", machine, "env", env={"ORBENV": "FOO", "FOO": "bar", "SECRET": "x"})
    assert "FOO=bar" in env.stdout and "SECRET" not in env.stdout


def test_run_exit_codes_stdin_user_workdir(sim: Sim, machine: str) -> None:
    assert sim("run", "-m", machine, "sh", "-c", "exit 42").returncode == 42
    assert sim("run", "-m", machine, "false").returncode == 1
    assert sim("run", "-m", machine, "no-such-command-xyz").returncode == 127
    res = sim("run", "-m", machine, "sh", "-c", "cat > in.txt && wc -c < in.txt", input="hello\n")
    assert res.stdout.strip() == "6"
    assert sim.ok("run", "-m", machine, "cat", "in.txt").stdout == "hello\n"
    assert sim.ok("run", "-m", machine, "-u", "root", "id", "-u").stdout == "0\n"
    assert sim.ok("run", "--machine", machine, "--user=root", "whoami").stdout == "root\n"
    assert sim.ok("run", "-m", machine, "-w", "/etc", "pwd").stdout == "/etc\n"
    assert sim.ok("run", "-m=" + machine, "-w", "/does/not/exist", "pwd").stdout == "/\n"
    assert sim.ok("run", "-m", machine, "-w", "/root", "pwd").stdout == "/\n"  # inaccessible
    assert sim.ok("run", "-m", machine, "-s", "echo a b | tr a-b x-y").stdout == "x y\n"
    # flags are only read before the first non-flag argument
    assert sim.ok("run", "-m", machine, "echo", "-u", "root").stdout == "-u root\n"
    res = sim("run", "-m", machine, "-u", "nobody-here", "true")
    assert res.returncode == 1


def test_stop_kills_processes_and_data_persists(sim: Sim) -> None:
    name = sim.create()
    sim.ok("run", "-m", name, "sh", "-c", "echo kept > data.txt")
    sim.ok("run", "-m", name, "sh", "-c", "nohup sleep 1000 >/dev/null 2>&1 &")
    holder = holder_pid(sim, name)
    pids = sim.ok("run", "-m", name, "-u", "root", "pgrep", "-x", "sleep").stdout.split()
    assert pids
    sim.ok("stop", name)
    assert sim.state(name) == "stopped"
    assert sim.ok("stop", name).returncode == 0  # no-op
    # nothing of the machine survives on the host
    assert holder not in sim.holders()
    sleepers = [
        p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p) == b"sleep\x001000\x00"
    ]
    assert sleepers == []
    # run auto-starts a stopped machine; data survived
    assert sim.ok("run", "-m", name, "cat", "data.txt").stdout == "kept\n"
    assert sim.state(name) == "running"
    sim.ok("restart", name)
    assert sim.ok("run", "-m", name, "cat", "data.txt").stdout == "kept\n"
    sim.ok("delete", "-f", name)
    assert not (sim.home / "machines").joinpath(name).exists()


def holder_pid(sim: Sim, name: str) -> int:
    st = json.loads((sim.home / "state.json").read_text())
    rec = next(r for r in st["machines"].values() if r["name"] == name)
    return int(rec["holder"]["pid"])


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_killed_holder_means_stopped(sim: Sim) -> None:
    name = sim.create()
    before = set(sim.holders())
    info = sim.json("info", name, "-f", "json")
    assert info["record"]["state"] == "running"
    os.kill(holder_pid(sim, name), 9)
    assert sim.wait_state(name, "stopped", 10) == "stopped"
    assert "ip4" not in sim.json("info", name, "-f", "json")
    assert sim.ok("run", "-m", name, "true").returncode == 0  # starts again
    assert set(sim.holders()) != before
    sim.ok("delete", "-f", name)


def test_clone_copies_and_diverges(sim: Sim) -> None:
    src = sim.create()
    sim.ok("run", "-m", src, "sh", "-c", "echo original > f.txt")
    dst = sim.name("clone")
    assert sim.ok("clone", src, dst).stdout == ""
    assert sim.state(dst) == "stopped"
    info = sim.json("info", dst, "-f", "json")["record"]
    assert info["config"]["default_username"] == "tester"
    assert sim.ok("run", "-m", dst, "cat", "f.txt").stdout == "original\n"
    assert sim.ok("run", "-m", dst, "hostname").stdout == f"{dst}\n"
    sim.ok("run", "-m", dst, "sh", "-c", "echo changed > f.txt; touch only-in-clone")
    assert sim.ok("run", "-m", src, "cat", "f.txt").stdout == "original\n"
    assert sim("run", "-m", src, "test", "-e", "only-in-clone").returncode == 1
    res = sim("clone", src, dst)
    assert res.stderr == f"[-32098] machine already exists: '{dst}'\n"
    sim.ok("delete", "-f", src, dst)


def test_push_pull(sim: Sim, machine: str, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha\n")
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "sub" / "b.txt").write_text("beta\n")
    assert sim.ok("push", "-m", machine, "a.txt", cwd=tmp_path).stdout == ""  # DEST "." = home
    assert sim.ok("run", "-m", machine, "cat", "/home/tester/a.txt").stdout == "alpha\n"
    owner = sim.ok("run", "-m", machine, "stat", "-c", "%U", "a.txt").stdout
    assert owner == "tester\n"
    sim.ok("push", "-m", machine, str(tmp_path / "dir"), str(tmp_path / "a.txt"), "/tmp/")
    assert sim.ok("run", "-m", machine, "cat", "/tmp/dir/sub/b.txt").stdout == "beta\n"
    res = sim("push", "-m", machine, "a.txt", "/root/", cwd=tmp_path)  # not writable by the user
    assert res.returncode == 1 and "Permission denied" in res.stderr
    res = sim("push", "-m", machine, "missing.txt", cwd=tmp_path)
    assert res.returncode == 1 and "No such file or directory" in res.stderr

    out = tmp_path / "out"
    out.mkdir()
    sim.ok("pull", "-m", machine, "a.txt", "/tmp/dir", str(out))
    assert (out / "a.txt").read_text() == "alpha\n"
    assert (out / "dir" / "sub" / "b.txt").read_text() == "beta\n"
    sim.ok("pull", "-m", machine, "/tmp/dir/sub/b.txt", cwd=out)  # DEST "." = host cwd
    assert (out / "b.txt").read_text() == "beta\n"
    res = sim("pull", "-m", machine, "/etc/shadow", str(out))
    assert res.returncode == 1 and "Permission denied" in res.stderr
    assert not (out / "shadow").exists()
    res = sim("pull", "-m", machine, "/nonexistent", str(out))
    assert res.returncode == 1


def test_export_import(sim: Sim, tmp_path: Path) -> None:
    src = sim.create()
    sim.ok("run", "-m", src, "sh", "-c", "echo exported > e.txt")
    archive = tmp_path / "m.tar.zst"
    sim.ok("export", src, str(archive))
    assert archive.stat().st_size > 1000
    new = sim.name("imp")
    sim.ok("import", "-n", new, str(archive))
    assert sim.state(new) == "stopped"
    assert sim.ok("run", "-m", new, "cat", "e.txt").stdout == "exported\n"
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar")
    res = sim("import", str(bad))
    assert res.stderr.startswith("[-32098] can't find '_orbstack/config.v1.json' in archive")
    sim.ok("delete", "-f", src, new)


def test_cloud_init_subset(sim: Sim, tmp_path: Path) -> None:
    ud = tmp_path / "user-data.json"
    ud.write_text(
        '{"write_files": [{"path": "/etc/ci-test", "content": "from-ci\\n"}],'
        ' "runcmd": ["echo ran > /root/ran"], "users": ["default", {"name": "extra"}],'
        ' "timezone": "UTC"}'
    )
    name = sim.create(None, "debian", "-c", str(ud))
    rec = sim.json("info", name, "-f", "json")["record"]
    assert rec["image"]["variant"] == "cloud"
    assert sim.ok("run", "-m", name, "cat", "/etc/ci-test").stdout == "from-ci\n"
    assert sim.ok("run", "-m", name, "-u", "root", "cat", "/root/ran").stdout == "ran\n"
    assert sim.ok("run", "-m", name, "id", "extra").returncode == 0
    assert sim.ok("run", "-m", name, "cloud-init", "status", "--wait").stdout == "status: done\n"
    assert "timezone" in sim.ok("logs", name).stdout  # not applied, and says so
    sim.ok("delete", "-f", name)
