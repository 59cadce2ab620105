"""Error classification, built from the real error texts in docs/orbctl-contract.md §9."""

from __future__ import annotations

import pytest

from pytest_orbstack.errors import (
    MachineExistsError,
    MachineNotFoundError,
    OrbctlError,
    OrbStackUnavailableError,
    PermanentError,
    StateError,
    TransientError,
    classify,
    first_error_line,
    strip_prefix,
)

PERMANENT = [
    "Error: invalid distro: foo",
    "Error: invalid architecture: x",
    "[-32098] create 'N': invalid machine name 'N'",
    "[-32098] no machines found",
    "[-32098] create 'N': cloud-init not supported for 'archlinux'",
    "[-32098] create 'N': make rootfs: image not found: {ubuntu 99.99 arm64 default}",
    "[-32098] cannot delete builtin machine",
    "can't find '_orbstack/config.v1.json' in archive. is this a valid OrbStack machine export?",
    "Unknown configuration key: foo",
    'Error: unknown command "x" for "orbctl"',
    "Error: accepts 1 arg(s), received 2",
    "Error: no machines specified",
]
NOT_FOUND = ["[-32098] machine not found: 'web'", "[-32098] machine not found"]
EXISTS = [
    "[-32098] create 'N': machine already exists: 'N'",
    "[-32098] machine already exists: 'N'",
    "[-32098] machine '\"N\"' already exists",
]
TRANSIENT = [
    "[-32098] create 'N': make rootfs: fetch index: get index: Get "
    '"https://cdn-images.orbstack.dev/streams/v1/images.json": dial tcp: lookup '
    "cdn-images.orbstack.dev: i/o timeout",
    "[-32098] create 'N': make rootfs: fetch index: GET index status: 502 Bad Gateway",
    "[-32098] create 'N': make rootfs: download rootfs: start GET https://x: EOF",
    "[-32098] create 'N': make rootfs: download metadata: unexpected EOF",
    "[-32098] create 'N': sha256 mismatch for URL https://x",
    "[-32098] create 'opensuse156': setup: machine didn't start in 30s (missing IP address)",
    "[-32098] create 'N': setup: machine crashed on startup",
    "[-32098] create 'N': setup: do initial setup: canceled by machine shutdown",
    "[-32098] create 'N': start: machine did not start: N - stopped",
    "[-32098] stop 'N': timeout",
    "[-32098] cannot start: operations are in progress: clone",
    "[-32098] cannot rename: operations are in progress: export",
    "[-32098] machine manager is stopping",
    "start VM: timed out waiting for VM to start",
    "timed out waiting for services to start",
    "VM exited unexpectedly; logs:\nboom",
]
STATE = [
    "[-32098] cannot transition from creating to deleting",
    "[-32098] cannot transition from creating to starting",
]


@pytest.mark.parametrize("text", PERMANENT)
def test_permanent(text: str) -> None:
    assert issubclass(classify(text, 1), PermanentError)


@pytest.mark.parametrize("text", NOT_FOUND)
def test_not_found(text: str) -> None:
    assert classify(text, 1) is MachineNotFoundError


@pytest.mark.parametrize("text", EXISTS)
def test_exists(text: str) -> None:
    assert classify(text, 1) is MachineExistsError


@pytest.mark.parametrize("text", TRANSIENT)
def test_transient(text: str) -> None:
    assert classify(text, 1) is TransientError


@pytest.mark.parametrize("text", STATE)
def test_state_dependent(text: str) -> None:
    assert classify(text, 1) is StateError


@pytest.mark.parametrize(
    "text",
    [
        # Broad words that the seed project retried on: they must not make an error transient.
        "[-32098] something about the machine setup went wrong",
        "[-32098] connection to the machine: network http tls",
        "",
    ],
)
def test_broad_words_are_not_classified(text: str) -> None:
    assert classify(text, 1) is OrbctlError


def test_go_panic_means_unavailable() -> None:
    stderr = "panic: start VM: boom\n\ngoroutine 1 [running]:\nmain.main()\n"
    assert classify(stderr, 2) is OrbStackUnavailableError


def test_error_carries_argv_rc_and_verbatim_stderr() -> None:
    stderr = "[-32098] machine not found: 'web'\n"
    err = MachineNotFoundError(["orbctl", "info", "-f", "json", "web"], 1, stderr)
    assert err.argv == ["orbctl", "info", "-f", "json", "web"]
    assert err.returncode == 1
    assert err.stderr == stderr
    assert err.message == "machine not found: 'web'"
    assert "orbctl info" in str(err) and "machine not found: 'web'" in str(err)


def test_first_line_skips_usage() -> None:
    text = "Error: invalid distro: foo\nUsage:\n  orbctl create [flags]\n"
    assert first_error_line(text) == "Error: invalid distro: foo"
    assert strip_prefix(first_error_line(text)) == "invalid distro: foo"


def test_a_command_this_orbstack_lacks_is_unsupported_not_just_permanent() -> None:
    # OrbStack before 2.0 has no clone: lifecycle falls back to create on this class alone.
    from pytest_orbstack.errors import UnsupportedCommandError

    assert classify('Error: unknown command "clone" for "orbctl"\n') is UnsupportedCommandError
    assert classify("Error: unknown flag: --bogus") is PermanentError
