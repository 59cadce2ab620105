"""Failure report parts (diagnostics.py): the console log tidied and bounded, the units a
deploy touched, the failed units read from ``systemctl --failed``."""

from __future__ import annotations

from pytest_orbstack import diagnostics
from pytest_orbstack.deploy.results import DeployResult, OperationResult
from pytest_orbstack.diagnostics import failed_units, failure_section, tidy_console, units_touched


def test_a_double_spaced_console_log_is_single_spaced() -> None:
    # a tty's \r\r\n line ends, read with universal newlines, are two line ends
    raw = "".join(f"\x1b[0;32m  OK  \x1b[0m line {i}\n\n" for i in range(5))
    assert tidy_console(raw) == "\n".join(f"  OK   line {i}" for i in range(5))


def test_carriage_returns_and_runs_of_blank_lines() -> None:
    raw = "one\r\ntwo\r\n\r\n\r\n\r\nthree\rfour\n\n"
    assert tidy_console(raw) == "one\ntwo\n\nthree\nfour"


def test_a_paragraph_break_in_a_normal_log_is_kept() -> None:
    raw = "a\nb\nc\n\nd\ne\n"
    assert tidy_console(raw) == "a\nb\nc\n\nd\ne"


def test_the_console_tail_is_bounded_in_lines_and_characters() -> None:
    raw = "\n".join(f"line {i}" for i in range(1000))
    tail = tidy_console(raw)
    assert tail.splitlines() == [f"line {i}" for i in range(1000 - diagnostics.CONSOLE_LINES, 1000)]
    wide = "\n".join("x" * 500 for _ in range(100))
    assert len(tidy_console(wide)) == diagnostics.CONSOLE_CHARS


def op(name: str, *commands: str) -> OperationResult:
    return OperationResult(name=name, changed=True, success=True, commands=commands)


def test_units_touched_by_systemctl_service_and_unit_files() -> None:
    result = DeployResult(
        machine="m",
        operations=(
            op("apt", "apt-get install -y nginx"),
            op("unit file", "cat > /etc/systemd/system/web.service <<EOF"),
            op("restart", "sudo -H -n sh -c 'systemctl restart nginx'"),
            op("enable", "systemctl --quiet enable --now redis-server.service getty@tty1"),
            op("timer", "systemctl start backup.timer"),
            op("sysv", "service cron reload"),
            op("daemon", "systemctl daemon-reload"),
        ),
    )
    assert units_touched([result]) == [
        "web.service",
        "nginx.service",
        "redis-server.service",
        "getty@tty1.service",
        "backup.timer",
        "cron.service",
    ]


def test_failed_units_from_systemctl_failed() -> None:
    listing = (
        "broken.service loaded failed failed made to fail\n"
        "\u25cf nginx.service loaded failed failed A high performance web server\n"
        "\n"
    )
    assert failed_units(listing) == ["broken.service", "nginx.service"]
    assert failed_units("0 loaded units listed.") == []


def test_failure_section_lists_each_part_under_its_title() -> None:
    text = failure_section(
        "m",
        ["spec: debian"],
        ["$ ['true'] -> 0"],
        "boot\nready",
        [("systemctl --failed", "x.service loaded failed failed"), ("journal of x", "a\nb")],
    )
    assert text.splitlines() == [
        "machine m",
        "  spec: debian",
        "last commands:",
        "  $ ['true'] -> 0",
        "console log (tail):",
        "  boot",
        "  ready",
        "systemctl --failed:",
        "  x.service loaded failed failed",
        "journal of x:",
        "  a",
        "  b",
    ]
