"""The server side of ``create`` and ``clone``: the record reserved by the client, the work
(image, boot, the default user's setup, cloud-init / the copied upper layer) run by
``server.serve`` in a process that outlives a killed client."""

from __future__ import annotations

from pathlib import Path

from . import state as S
from . import transitions
from .ctx import Ctx
from .distros import valid_name
from .errors import SimError
from .guest import PROVISION, finish, guest_root_popen, guest_root_sh, reset_identity
from .host import require_host
from .machines import discard, start_machine
from .records import new_record, note

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    import subprocess
    from typing import Any


def create(
    ctx: Ctx,
    name: str,
    image: dict[str, str],
    user: str,
    user_data: Any = None,
    password: str | None = None,
    *,
    config: dict[str, Any] | None = None,
) -> int:
    """Create, start and provision a machine.  Returns the exit code for the client.
    ``config``: the record's config from ``create``'s flags (orbsim/settings.py)."""
    ctx.touch(name)
    pre = f"create '{name}': "
    if not valid_name(name):
        raise SimError(f"{pre}invalid machine name '{name}'")
    require_host()
    with S.transaction(ctx.home) as t:
        if S.find(t.st, name) is not None:
            raise SimError(f"{pre}machine already exists: '{name}'")
        mid = S.new_id()
        rec = new_record(mid, name, image, config or {"isolated": False, "default_username": user})
        t.st["machines"][mid] = rec
    S.machine_dir(ctx.home, mid).mkdir(parents=True, exist_ok=True)
    note(ctx.home, mid, f"create {name} ({image['distro']}:{image['version']}) requested")
    from .server import serve  # goes on if the client is killed, as OrbStack does

    return serve(ctx, mid, lambda: _create_work(ctx, mid, user, user_data, password), prefix=pre)


def _create_work(ctx: Ctx, mid: str, user: str, user_data: Any, password: str | None) -> None:
    rec: S.Record | None = None
    try:
        with S.transaction(ctx.home) as t:
            rec = t.st["machines"][mid]
        ctx.inject(rec["name"], rec["image"])
        from . import images

        src = images.resolve(ctx, S.read(ctx.home), rec["image"])
        if src.note:
            note(ctx.home, mid, src.note)
        with S.transaction(ctx.home) as t:
            rec = t.st["machines"][mid]
            rec["lower"], rec["suite"], rec["source"] = str(src.path), src.suite, src.label
            if src.substituted:
                rec["substituted"] = src.note
        # the default user is set up while systemd boots (it needs files, not services)
        provisioning: list[subprocess.Popen[bytes]] = []

        def provision() -> None:
            note(ctx.home, mid, "provisioning")
            provisioning.append(guest_root_popen(ctx.home, mid, PROVISION, user))

        holder, ip4 = start_machine(ctx, rec, while_booting=provision)
        with S.transaction(ctx.home) as t:
            rec = t.st["machines"][mid]
            rec["holder"], rec["ip4"] = holder, ip4
        res = finish(provisioning[0], timeout=600)
        if res.returncode != 0:
            raise SimError(
                f"create '{rec['name']}': setup: do initial setup: "
                + (res.stderr.decode(errors="replace").strip() or f"exit {res.returncode}")
            )
        if password:
            lines = f"root:{password}\n" + (f"{user}:{password}\n" if user != "root" else "")
            guest_root_sh(ctx.home, rec, "chpasswd", stdin=lines.encode())
        if user_data is not None:
            from .cloudinit import apply_user_data

            apply_user_data(ctx, rec, user, user_data, note=note, guest_root_sh=guest_root_sh)
        with S.transaction(ctx.home) as t:
            r = t.st["machines"][mid]
            r["state"], r["owner"] = "running", None
            t.st["running"] = True
            if t.st.get("default") not in t.st["machines"]:
                t.st["default"] = mid
        note(ctx.home, mid, "created")
    except BaseException:
        discard(ctx, mid)
        raise


def _copy_tree(src: Path, dst: Path) -> None:
    import subprocess

    res = subprocess.run(
        ["cp", "-a", "--reflink=auto", str(src), str(dst)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    if res.returncode != 0:
        raise SimError("clone: copy data: " + res.stderr.decode(errors="replace").strip())


def clone(ctx: Ctx, old: str, new: str) -> int:
    ctx.touch(new)
    with S.transaction(ctx.home) as t:
        src = S.find(t.st, old)
        if src is None:
            raise transitions.not_found(old)
        ctx.touch(src["name"])
        if not valid_name(new):
            raise SimError(f"invalid machine name '{new}'")
        if S.find(t.st, new) is not None:
            raise SimError(f"machine already exists: '{new}'")
        transitions.guard("clone", src)  # refused while creating/deleting or busy
        transitions.begin("clone", src)
        mid = S.new_id()
        extra = {k: src[k] for k in ("suite", "source", "substituted") if src.get(k)}
        rec = new_record(mid, new, src["image"], src["config"], lower=src["lower"], **extra)
        t.st["machines"][mid] = rec
        src_id, src_name = src["id"], src["name"]
    S.machine_dir(ctx.home, mid).mkdir(parents=True, exist_ok=True)
    note(ctx.home, mid, f"clone of {old} requested")

    def work() -> None:
        try:
            with S.transaction(ctx.home) as t:
                s = t.st["machines"].get(src_id)
                if s is not None and s.get("busy"):
                    s["busy"] = {"op": "clone", **S.me()}
            ctx.inject(src_name)
            mdir = S.machine_dir(ctx.home, mid)
            src_upper = S.machine_dir(ctx.home, src_id) / "upper"
            if src_upper.exists():
                _copy_tree(src_upper, mdir / "upper")
            (mdir / "upper").mkdir(exist_ok=True)
            reset_identity(mdir / "upper")  # own machine-id; hostname written at its start
            with S.transaction(ctx.home) as t:
                r = t.st["machines"][mid]
                r["state"], r["owner"] = "stopped", None
                s = t.st["machines"].get(src_id)
                if s is not None:
                    s["busy"] = None
            note(ctx.home, mid, "cloned")
        except BaseException:
            transitions.release(ctx, src_id, "clone")
            discard(ctx, mid)
            raise

    from .server import serve  # goes on if the client is killed, as OrbStack does

    return serve(ctx, mid, work)
