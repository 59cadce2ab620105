"""``deploy_from=``: a deploy's directory taken from git at a revision (real ``git``, a
throw-away repository; no machines)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pytest_orbstack.deploy.revisions import deploy_at_revision
from pytest_orbstack.errors import ConfigError
from pytest_orbstack.spec import build_spec


def git(repo: Path, *args: str) -> str:
    argv = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    out = subprocess.run(argv, cwd=repo, check=True, capture_output=True, text=True)
    return out.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "deploys" / "templates").mkdir(parents=True)
    git(root, "init", "-q")
    (root / "deploys" / "app.py").write_text("VERSION = 1\n")
    (root / "deploys" / "templates" / "a.j2").write_text("one\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "v1")
    git(root, "tag", "v1")
    (root / "README").write_text("docs only\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "docs")
    git(root, "tag", "v1-docs")
    (root / "deploys" / "app.py").write_text("VERSION = 2\n")
    (root / "deploys" / "new.py").write_text("")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "v2")
    (root / "deploys" / "app.py").write_text("VERSION = 3  # not committed\n")
    return root


def test_the_deploy_directory_as_it_was(repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    old = Path(deploy_at_revision(str(repo / "deploys" / "app.py"), "v1", "t", cache))
    assert old.read_text() == "VERSION = 1\n"  # the revision, not the working tree
    assert (old.parent / "templates" / "a.j2").read_text() == "one\n"  # the whole directory
    head = Path(deploy_at_revision(str(repo / "deploys" / "app.py"), "HEAD", "t", cache))
    assert head.read_text() == "VERSION = 2\n"
    # keyed by the directory's content: a later commit that left it alone is the same tree
    same = Path(deploy_at_revision(str(repo / "deploys" / "app.py"), "v1-docs", "t", cache))
    assert same == old and head != old
    assert old.parent.name == git(repo, "rev-parse", "v1:deploys")


@pytest.mark.parametrize(
    ("deploy", "rev", "message"),
    [
        ("deploys/app.py", "v9", "no such revision"),
        ("deploys/new.py", "v1", "deploys/new.py does not exist at v1"),
        ("deploys/app.py", "--all", "must be a git revision"),
        ("deploys/app.py", 3, "must be a git revision"),
    ],
)
def test_usage_errors(repo: Path, tmp_path: Path, deploy: str, rev: object, message: str) -> None:
    with pytest.raises(ConfigError, match="^t::x") as info:
        deploy_at_revision(str(repo / deploy), rev, "t::x", tmp_path / "cache")
    assert message in str(info.value)


def test_not_a_git_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "app.py").write_text("")
    with pytest.raises(ConfigError, match="is not in a git repository"):
        deploy_at_revision(str(plain / "app.py"), "v1", "t::x", tmp_path / "cache")


def test_the_marker_spec_uses_the_old_deploy(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORBSTACK_STATE_DIR", str(tmp_path / "state"))
    values = {"deploy": "deploys/app.py", "deploy_from": "v1", "isolation": "function"}
    spec = build_spec(values, where="t::x", base_dir=repo)
    assert spec.deploy is not None and Path(spec.deploy).read_text() == "VERSION = 1\n"
    assert spec.deploy_from == "v1" and spec.describe().endswith("deploy=app.py@v1")
    today = build_spec({"deploy": "deploys/app.py"}, where="t::x", base_dir=repo)
    assert today.slot() != spec.slot()
    with pytest.raises(ConfigError, match="add deploy="):
        build_spec({"deploy_from": "v1"}, where="t::x", base_dir=repo)


def test_a_topology_deploys_the_old_release_with_deploy_from(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_orbstack.topology import build_topology

    monkeypatch.setenv("ORBSTACK_STATE_DIR", str(tmp_path / "state"))
    values = {"inventory": {"web": 2}, "deploy": "deploys/app.py", "deploy_from": "v1"}
    topology = build_topology(values, where="t::x", base_dir=repo, default_image="debian:bookworm")
    assert topology.deploy is not None and Path(topology.deploy).read_text() == "VERSION = 1\n"
    assert topology.describe() == "inventory(web=2) deploy=app.py@v1"
    with pytest.raises(ConfigError, match=r"^t::x: deploy_from='v9': no such revision"):
        build_topology(
            {**values, "deploy_from": "v9"},
            where="t::x",
            base_dir=repo,
            default_image="debian:bookworm",
        )
    with pytest.raises(ConfigError, match="^t::x: deploy_from= names the revision"):
        build_topology(
            {"inventory": {"web": 1}, "deploy_from": "v1"},
            where="t::x",
            base_dir=repo,
            default_image="debian:bookworm",
        )
