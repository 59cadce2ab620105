"""``export`` and ``import``: a machine as an OrbStack-style archive (``_orbstack/config.v1.json``
plus ``rootfs/``), and ``sim-import-rootfs``."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from . import rootfs, transitions
from . import state as S
from .ctx import Ctx
from .distros import valid_name
from .errors import SimError
from .guest import reset_identity
from .host import require_host
from .machines import discard
from .records import new_record, note, public_record

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    from typing import Any

CONFIG_MEMBER = "_orbstack/config.v1.json"

BAD_ARCHIVE = (
    "can't find '_orbstack/config.v1.json' in archive. is this a valid OrbStack machine export?"
)


def export(ctx: Ctx, key: str, out: Path) -> None:
    with S.transaction(ctx.home) as t:
        rec = S.find(t.st, key)
        if rec is None:
            raise transitions.not_found(key)
        ctx.touch(rec["name"])
        transitions.guard("export", rec)  # refused while creating/deleting or busy
        transitions.begin("export", rec)
        snap = dict(rec)
    try:
        ctx.inject(snap["name"])
        _export_work(ctx, snap, out)
    finally:
        transitions.release(ctx, snap["id"], "export")


def _export_work(ctx: Ctx, rec: S.Record, out: Path) -> None:
    import shutil
    import subprocess

    mdir = S.machine_dir(ctx.home, rec["id"])
    staging = mdir / f"export-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "_orbstack").mkdir(parents=True)
    cfg = {
        "version": 1,
        "record": public_record(rec, "stopped"),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host_uid": os.getuid(),
        "host_gid": os.getgid(),
        "source_fs": "overlay",
        "subvolumes": [{"path": "rootfs", "id": rec["id"]}],
    }
    (staging / CONFIG_MEMBER).write_text(json.dumps(cfg, indent=2) + "\n")
    copt, _ = rootfs.compressor()
    if out.name.endswith((".gz", ".tgz")):
        copt = ["-z"]
    elif out.name.endswith(".zst") and shutil.which("zstd"):
        copt = ["-I", "zstd -T0 -3"]
    tmp_out = out.with_name(out.name + f".{os.getpid()}.part")
    tar_tail = [
        "tar",
        *copt,
        "--numeric-owner",
        "--xattrs",
        "--xattrs-include=*",
        "--warning=no-file-changed",
        "-cf",
        str(tmp_out),
        "-C",
        str(staging),
        "_orbstack",
        "--one-file-system",
        "--exclude=./etc/resolv.conf",
        "--transform=s,^\\.,rootfs,S",
    ]
    holder = rec.get("holder") if rec["state"] == "running" else None
    try:
        if holder and S.alive(holder):
            argv = [*tar_tail, "-C", f"/proc/{holder['pid']}/root", "."]
        else:
            mnt = mdir / f"export-mnt-{os.getpid()}"
            mnt.mkdir(exist_ok=True)
            lower = rec["lower"]
            upper = mdir / "upper"
            script = 'mount -t overlay overlay -o "lowerdir=$1" "$2" && shift 2 && exec "$@"'
            argv = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                script,
                "sh",
                f"{upper}:{lower}",
                str(mnt),
                *tar_tail,
                "-C",
                str(mnt),
                ".",
            ]
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True)
        if res.returncode not in (0, 1):
            raise SimError("export: " + res.stderr.decode(errors="replace").strip())
        os.replace(tmp_out, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            tmp_out.unlink()
        for p in mdir.glob(f"export-mnt-{os.getpid()}"):
            with contextlib.suppress(OSError):
                p.rmdir()


def read_export_config(archive: Path) -> dict[str, Any]:
    import subprocess

    try:
        dopts = rootfs.decompress_opts(archive)
    except FileNotFoundError:
        raise SimError(f"open {archive}: no such file or directory") from None
    except rootfs.RootfsError as exc:
        raise SimError(str(exc)) from None
    res = subprocess.run(
        ["tar", *dopts, "-xOf", str(archive), "--occurrence=1", CONFIG_MEMBER],
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    if res.returncode != 0 or not res.stdout.strip():
        raise SimError(BAD_ARCHIVE)
    try:
        cfg: dict[str, Any] = json.loads(res.stdout)
        cfg["record"]["name"]
    except (ValueError, KeyError, TypeError):
        raise SimError(BAD_ARCHIVE) from None
    return cfg


def import_(ctx: Ctx, archive: Path, name: str | None) -> None:
    import shutil

    cfg = read_export_config(archive)
    record = cfg["record"]
    name = name or record["name"]
    ctx.touch(name)
    if not valid_name(name):
        raise SimError(f"invalid machine name '{name}'")
    require_host()
    img = record.get("image") or {}
    image = {
        "distro": img.get("distro", "debian"),
        "version": img.get("version", "bookworm"),
        "arch": img.get("arch", "amd64"),
        "variant": img.get("variant", "default"),
    }
    with S.transaction(ctx.home) as t:
        if S.find(t.st, name) is not None:
            raise SimError(f"machine already exists: '{name}'")
        mid = S.new_id()
        config = record.get("config") or {"isolated": False, "default_username": ""}
        t.st["machines"][mid] = new_record(mid, name, image, config)
    try:
        ctx.inject(name)
        imgdir = ctx.home / "images" / mid
        rootfs.extract_tar(archive, imgdir / "rootfs", ["--strip-components=1", "rootfs"])
        if not (imgdir / "rootfs" / "etc").is_dir():
            raise SimError(BAD_ARCHIVE)
        for sub in ("proc", "sys", "dev", "run", "tmp"):
            (imgdir / "rootfs" / sub).mkdir(exist_ok=True)
        mdir = S.machine_dir(ctx.home, mid)
        (mdir / "upper").mkdir(parents=True, exist_ok=True)
        reset_identity(mdir / "upper")  # an imported machine is a new machine
        with S.transaction(ctx.home) as t:
            r = t.st["machines"][mid]
            r["state"], r["owner"], r["lower"] = "stopped", None, str(imgdir / "rootfs")
            key = f"{image['distro']}:{image['version']}:{image['arch']}"
            t.st.setdefault("images", {})[key] = str(imgdir / "rootfs")
        note(ctx.home, mid, f"imported from {archive}")
    except BaseException:
        discard(ctx, mid)
        shutil.rmtree(ctx.home / "images" / mid, ignore_errors=True)
        raise


def import_rootfs(ctx: Ctx, image: dict[str, str], tarball: Path) -> Path:
    """``sim-import-rootfs``: register a root filesystem tarball as the base of an image."""
    import shutil

    if not tarball.exists():
        raise SimError(f"open {tarball}: no such file or directory")
    iid = S.new_id()
    dest = ctx.home / "images" / iid / "rootfs"
    rootfs.extract_tar(tarball, dest)
    if not (dest / "etc").is_dir():
        shutil.rmtree(dest.parent, ignore_errors=True)
        raise SimError(f"{tarball}: not a root filesystem (no etc/ at the top)")
    for sub in ("proc", "sys", "dev", "run", "tmp"):
        (dest / sub).mkdir(exist_ok=True)
    with S.transaction(ctx.home) as t:
        key = f"{image['distro']}:{image['version']}:{image['arch']}"
        t.st.setdefault("images", {})[key] = str(dest)
    return dest
