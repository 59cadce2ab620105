"""A deploy as it was at a git revision: the marker's ``deploy_from=`` (upgrade tests).

``@pytest.mark.orbstack(deploy="site.py", deploy_from="v1.0", isolation="function")``
provisions the template with ``site.py``'s directory taken from the user's repository at
``v1.0`` (``git archive``, never the working tree); each test gets a clone of that old release
and applies today's deploy to it.  The directory is extracted once per git *tree* (its content
id) under the state directory, so the template's hash - and ``--orbstack-reuse`` - follow the
revision's content, not its name.

git runs through :func:`~pytest_orbstack.deploy.runner.run_tool` (argv lists, no shell): this
module only decides what to ask.  Not a git repository, an unknown revision, or a deploy that
is absent at that revision is a :class:`~pytest_orbstack.errors.ConfigError` naming the test.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
import tempfile
import threading
from pathlib import Path, PurePosixPath

from pytest_orbstack.deploy.runner import run_tool
from pytest_orbstack.errors import ConfigError

#: A revision as users write them (tags, branches, hashes, ``HEAD~2``), never an option.
_REV = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_./@{}~^+-]*$")
_LOCK = threading.Lock()
_CACHE: dict[tuple[str, str], str] = {}


def _git(args: list[str], cwd: Path) -> tuple[int, str]:
    try:
        proc = run_tool(["git", *args], cwd)
    except FileNotFoundError:
        return 127, "git is not installed"
    text = (proc.stdout if proc.returncode == 0 else proc.stderr).decode(errors="replace")
    return proc.returncode, text.strip()


def revisions_dir() -> Path:
    from pytest_orbstack.registry import default_state_dir

    return default_state_dir() / "revisions"


def deploy_at_revision(deploy: str, rev: object, where: str, cache: Path | None = None) -> str:
    """The path of ``deploy`` (an absolute deploy file) as it was at git revision ``rev``:
    its directory extracted from the repository, once per tree.  :class:`ConfigError` naming
    ``where`` when it cannot be had."""
    if not isinstance(rev, str) or not _REV.match(rev):
        raise ConfigError(
            f"{where}: deploy_from={rev!r} must be a git revision: a tag, branch or commit "
            f"(e.g. 'v1.0' or 'HEAD~1')"
        )
    key = (deploy, rev)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    path = Path(deploy)
    code, top = _git(["rev-parse", "--show-toplevel"], path.parent)
    if code != 0:
        raise ConfigError(
            f"{where}: deploy_from={rev!r}: {path.parent} is not in a git repository ({top}); "
            f"deploy_from takes the deploy from the repository's history"
        )
    verify = ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"]
    code, commit = _git(verify, path.parent)
    if code != 0 or not commit:
        raise ConfigError(
            f"{where}: deploy_from={rev!r}: no such revision in {top} (git tag / git log list "
            f"what there is)"
        )
    rel_dir = PurePosixPath(path.parent.resolve().relative_to(Path(top).resolve()).as_posix())
    rel_file = rel_dir / path.name
    spec_dir = "" if str(rel_dir) == "." else str(rel_dir)
    code, _ = _git(["cat-file", "-e", f"{commit}:{rel_file}"], Path(top))
    if code != 0:
        raise ConfigError(
            f"{where}: deploy_from={rev!r}: {rel_file} does not exist at {rev} "
            f"({commit[:12]}); choose a revision that has it"
        )
    code, tree = _git(["rev-parse", "--verify", "--quiet", f"{commit}:{spec_dir}"], Path(top))
    if code != 0:  # pragma: no cover - the file exists, so its directory does
        raise ConfigError(f"{where}: deploy_from={rev!r}: cannot read {spec_dir or '.'}: {tree}")
    target = (cache or revisions_dir()) / tree
    if not (target / ".complete").is_file():
        _extract(Path(top), commit, spec_dir, target, where)
    result = str(target / path.name)
    with _LOCK:
        _CACHE[key] = result
    return result


def _extract(top: Path, commit: str, spec_dir: str, target: Path, where: str) -> None:
    """``git archive COMMIT:DIR`` unpacked into ``target`` atomically (temp dir + rename)."""
    proc = run_tool(["git", "archive", "--format=tar", f"{commit}:{spec_dir}"], top, timeout=300)
    if proc.returncode != 0:
        raise ConfigError(
            f"{where}: git archive of {spec_dir or '.'} at {commit[:12]} failed: "
            f"{proc.stderr.decode(errors='replace').strip()}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        (tmp / ".complete").write_text(commit + "\n")
        try:
            os.rename(tmp, target)
        except OSError:  # another process extracted the same tree first
            if not (target / ".complete").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


__all__ = ["deploy_at_revision", "revisions_dir"]
