"""Which root filesystem a machine of an image gets: the release asked for, or a visible stand-in.

In this order:

1. a root filesystem imported for exactly that image in this home (``import``,
   ``sim-import-rootfs``);
2. **Debian** releases (``bullseye``, ``bookworm``, ``trixie``, ...): bootstrapped once each
   from Debian's archive (``$ORBSIM_MIRROR``) and cached (``rootfs.ensure_base``);
3. **other distros** (Ubuntu first: OrbStack's default): LXC's image server, the one LXC's own
   ``download`` template uses (``$ORBSIM_IMAGE_SERVER``, default
   ``https://images.linuxcontainers.org``; any mirror with the same layout): its index
   ``meta/1.0/index-system`` names a directory per ``distro;release;arch;variant`` whose
   ``rootfs.tar.xz`` is fetched once and cached under ``$ORBSIM_CACHE/images/``;
4. when none of that is reachable: **Debian stable, visibly**: the machine's console log
   (``orbsim logs``) and ``orbsim info`` (text) say which image was asked for and what was
   used instead, and the record keeps it (``substituted``).  Never silently.

An unreachable image server is remembered for a few minutes (``$ORBSIM_CACHE/images/
unreachable.json``), so a suite of Ubuntu machines on an offline CI host does not wait for a
timeout per machine.

Signatures: with ``$ORBSIM_IMAGE_KEYRING`` (a GnuPG keyring file, binary, as ``gpg --export
KEYID > FILE`` writes it) the index and every root filesystem must carry a valid detached
signature (``index-system.asc``, ``rootfs.tar.xz.asc``, as on LXC's server) by a key in it,
checked with ``gpgv``; a missing or bad signature fails the create (no stand-in: a tampered
mirror is an error, not an unavailable image), and verified images are cached apart from
unverified ones.  Without it, downloads are checked by HTTPS only, as LXC 5.0's own
``download`` template does (older ones checked those ``.asc`` files; orbsim ships no keyring).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from . import rootfs
from . import state as S
from .errors import SimError
from .files import read_json, write_json

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    from .ctx import Ctx

DEFAULT_SERVER = "https://images.linuxcontainers.org"
UNREACHABLE_TTL = 300.0
TIMEOUT = float(os.environ.get("ORBSIM_IMAGE_TIMEOUT") or 10)


class Source:
    """Where a machine's root filesystem comes from (a plain class: no dataclasses import on
    create's path)."""

    __slots__ = ("label", "note", "path", "substituted", "suite")

    def __init__(
        self,
        path: Path,
        suite: str | None,
        label: str,
        note: str | None = None,
        substituted: bool = False,
    ) -> None:
        self.path = path
        self.suite = suite
        self.label = label
        self.note = note
        self.substituted = substituted


class ImageVerificationError(SimError):
    """A downloaded file failed its signature check (never answered by a stand-in image)."""


def server() -> str:
    return (os.environ.get("ORBSIM_IMAGE_SERVER") or DEFAULT_SERVER).rstrip("/")


def keyring() -> Path | None:
    """The keyring downloads must be signed by (``$ORBSIM_IMAGE_KEYRING``), if any."""
    path = os.environ.get("ORBSIM_IMAGE_KEYRING")
    if not path:
        return None
    ring = Path(path).expanduser()
    if not ring.is_file():
        raise ImageVerificationError(f"ORBSIM_IMAGE_KEYRING: no keyring file at {ring}")
    return ring


def verify(ring: Path, signature: bytes, data: Path, what: str) -> None:
    """``gpgv`` checks ``data`` against the detached ``signature`` with keys of ``ring``."""
    import shutil
    import subprocess
    import tempfile

    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise ImageVerificationError(
            "ORBSIM_IMAGE_KEYRING is set but gpgv is not installed (apt-get install gpgv)"
        )
    with tempfile.NamedTemporaryFile(suffix=".asc") as sig:
        sig.write(signature)
        sig.flush()
        res = subprocess.run(
            [gpgv, "--keyring", str(ring.resolve()), sig.name, str(data)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
    if res.returncode != 0:
        lines = [ln for ln in res.stderr.splitlines() if ln.startswith("gpgv:")]
        raise ImageVerificationError(
            f"signature check of {what} failed: {lines[-1] if lines else res.stderr.strip()}"
        )


def resolve(ctx: Ctx, st: S.State, image: dict[str, str]) -> Source:
    distro, version, arch = image["distro"], image["version"], image["arch"]
    key = f"{distro}:{version}:{arch}"
    path = (st.get("images") or {}).get(key)
    if path and (Path(path) / "etc").is_dir():
        return Source(Path(path), None, f"imported {key}")
    why: str
    if distro == "debian":
        try:
            p = rootfs.ensure_base(ctx.cache, suite=version)
            return Source(p, version, f"debian {version} (debootstrap)")
        except rootfs.RootfsError as exc:
            why = f"debootstrap of debian {version} failed: {exc}"
    else:
        try:
            p = download(ctx.cache, distro, version, arch, image.get("variant") or "default")
            return Source(p, None, f"{distro} {version} from {server()}")
        except ImageVerificationError:
            raise  # a bad or missing signature is an error, not an unavailable image
        except SimError as exc:
            why = exc.msg
    stable = rootfs.ensure_base(ctx.cache, suite=rootfs.SUITE)
    note = (
        f"image {distro}:{version} is not available here ({why}); "
        f"SUBSTITUTED Debian {rootfs.SUITE} (stable) for it"
    )
    return Source(stable, rootfs.SUITE, f"debian {rootfs.SUITE} (substitute)", note, True)


# ---------------------------------------------------------------- LXC image server


def _images_dir(cache: Path) -> Path:
    return cache / "images"


def _unreachable(cache: Path, srv: str) -> str | None:
    data = read_json(_images_dir(cache) / "unreachable.json") or {}
    ent = data.get(srv)
    if ent and time.time() - float(ent.get("at", 0)) < UNREACHABLE_TTL:
        return str(ent.get("why"))
    return None


def _mark_unreachable(cache: Path, srv: str, why: str) -> None:
    d = _images_dir(cache)
    d.mkdir(parents=True, exist_ok=True)
    p = d / "unreachable.json"
    data = read_json(p) or {}
    data[srv] = {"at": time.time(), "why": why}
    write_json(p, data)


def _get(url: str, dest: Path | None = None) -> bytes:
    import shutil
    import urllib.request

    req = urllib.request.Request(url, headers={"User-Agent": "orbsim (lxc-download protocol)"})
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        if dest is None:
            body: bytes = resp.read()
            return body
        with open(dest, "wb") as f:
            shutil.copyfileobj(resp, f, 1 << 20)
    return b""


def _check_signed(ring: Path, url: str, data: bytes | Path, cache: Path) -> None:
    """Fetch ``URL.asc`` and check ``data`` (bytes, or a downloaded file) against it."""
    import tempfile
    import urllib.error

    try:
        signature = _get(f"{url}.asc")
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise ImageVerificationError(f"no signature for {url} ({exc})") from None
    if isinstance(data, Path):
        verify(ring, signature, data, url)
        return
    with tempfile.NamedTemporaryFile(dir=_images_dir(cache)) as tmp:
        tmp.write(data)
        tmp.flush()
        verify(ring, signature, Path(tmp.name), url)


def find_image(index: str, distro: str, version: str, arch: str, variant: str) -> str | None:
    """The newest image path of the index for distro/release/arch/variant."""
    best: tuple[str, str] | None = None
    for line in index.splitlines():
        parts = line.strip().split(";")
        if len(parts) < 6:
            continue
        d, rel, a, var, serial, path = parts[:6]
        if (d, rel, a) != (distro, version, arch):
            continue
        if var not in (variant, "default") and variant != "cloud":
            continue
        if var == "cloud" and variant != "cloud":
            continue
        if best is None or serial > best[0]:
            best = (serial, path)
    return best[1] if best else None


def download(cache: Path, distro: str, version: str, arch: str, variant: str) -> Path:
    import shutil
    import urllib.error

    if not distro.replace("-", "").isalnum() or not version.replace(".", "").isalnum():
        raise SimError(f"invalid image {distro}:{version}")
    srv = server()
    if not srv.startswith(("http://", "https://")):
        raise SimError(f"ORBSIM_IMAGE_SERVER must be an http(s) URL: {srv}")
    ring = keyring()
    verified = "-verified" if ring is not None else ""
    base = _images_dir(cache) / f"{distro}-{version}-{arch}-{rootfs.BASE_VERSION}{verified}"
    if (base / "ok").exists() and (base / "rootfs" / "etc").is_dir():
        return base / "rootfs"
    why = _unreachable(cache, srv)
    if why:
        raise SimError(f"image server {srv} unreachable ({why})")
    from .locks import locked

    _images_dir(cache).mkdir(parents=True, exist_ok=True)
    with locked(_images_dir(cache) / "download.lock", timeout=3600):
        if (base / "ok").exists() and (base / "rootfs" / "etc").is_dir():
            return base / "rootfs"
        try:
            index_bytes = _get(f"{srv}/meta/1.0/index-system")
        except (OSError, urllib.error.URLError, ValueError) as exc:
            _mark_unreachable(cache, srv, str(exc))
            raise SimError(f"image server {srv} unreachable ({exc})") from None
        if ring is not None:
            _check_signed(ring, f"{srv}/meta/1.0/index-system", index_bytes, cache)
        index = index_bytes.decode(errors="replace")
        path = find_image(index, distro, version, arch, variant)
        if path is None:
            raise SimError(f"image server {srv} has no {distro} {version} {arch} image")
        build = _images_dir(cache) / f".build-{base.name}-{os.getpid()}"
        shutil.rmtree(build, ignore_errors=True)
        (build / "rootfs").mkdir(parents=True)
        tarball = build / "rootfs.tar.xz"
        url = f"{srv}/{path.strip('/')}/rootfs.tar.xz"
        try:
            _get(url, tarball)
            if ring is not None:
                _check_signed(ring, url, tarball, cache)
            rootfs.extract_tar(tarball, build / "rootfs")
        except (OSError, urllib.error.URLError, rootfs.RootfsError) as exc:
            shutil.rmtree(build, ignore_errors=True)
            raise SimError(f"download {distro} {version}: {exc}") from None
        except ImageVerificationError:
            shutil.rmtree(build, ignore_errors=True)
            raise
        tarball.unlink()
        root = build / "rootfs"
        if not (root / "etc").is_dir():
            shutil.rmtree(build, ignore_errors=True)
            raise SimError(f"download {distro} {version}: not a root filesystem")
        rootfs.prepare_systemd_root(root)
        for sub in ("proc", "sys", "dev", "run", "tmp"):
            (root / sub).mkdir(exist_ok=True)
        (build / "source").write_text(f"{srv}/{path.strip('/')}\n")
        (build / "ok").write_text(f"{time.time()}\n")
        if base.exists():
            aside = _images_dir(cache) / f".old-{base.name}-{os.getpid()}"
            os.rename(base, aside)
            shutil.rmtree(aside, ignore_errors=True)
        os.rename(build, base)
    with contextlib.suppress(OSError):
        (_images_dir(cache) / "unreachable.json").unlink()
    return base / "rootfs"
