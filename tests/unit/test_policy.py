"""The plugin's decisions as pure functions (policy.py): keep, demand, pool depth.

No machines, no orbctl, no files: these run anywhere, macOS included.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from pytest_orbstack.policy import (
    SHARED_KINDS,
    at_run_end,
    auto_pool_depth,
    claim_wait,
    demand_unit,
    keep_after_use,
    no_test_mode,
    pool_room,
    supply_threads,
)
from pytest_orbstack.settings import KEEP_POLICIES, KeepPolicy

KINDS = ("session", "reuse", "template", "function")
STATES = ("creating", "ready", "kept")
BOOLS = (False, True)

# -- keep_after_use ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "failed", "kept"),
    [
        ("never", False, False),
        ("never", True, False),
        ("on-failure", False, False),
        ("on-failure", True, True),
        ("always", False, True),
        ("always", True, True),
    ],
)
def test_keep_after_use(policy: KeepPolicy, failed: bool, kept: bool) -> None:
    assert keep_after_use(policy, failed=failed) is kept


def test_keep_policies_are_the_documented_three() -> None:
    assert set(KEEP_POLICIES) == {"never", "on-failure", "always"}


# -- at_run_end: hand-written table of the cases users ask about ------------------------------


@pytest.mark.parametrize(
    ("policy", "kind", "state", "kept", "persistent", "failed", "action"),
    [
        # the default: everything the run made goes
        ("never", "session", "ready", False, False, False, "delete"),
        ("never", "session", "ready", False, False, True, "delete"),
        ("never", "function", "ready", False, False, True, "delete"),
        ("never", "template", "ready", False, False, False, "delete"),
        # on-failure keeps the shared machine a failing test used, and only that
        ("on-failure", "session", "ready", False, False, True, "keep"),
        ("on-failure", "session", "ready", False, False, False, "delete"),
        ("on-failure", "reuse", "ready", False, False, True, "keep"),
        ("on-failure", "template", "ready", False, False, True, "delete"),
        ("on-failure", "function", "ready", False, False, True, "delete"),
        # always keeps shared machines, never templates or fresh ones left over
        ("always", "session", "ready", False, False, False, "keep"),
        ("always", "reuse", "creating", False, False, False, "keep"),
        ("always", "template", "ready", False, False, False, "delete"),
        ("always", "function", "ready", False, False, False, "delete"),
        # --orbstack-reuse: ready persistent machines stay for the next run, whatever the policy
        ("never", "reuse", "ready", False, True, False, "keep for reuse"),
        ("never", "template", "ready", False, True, True, "keep for reuse"),
        ("always", "reuse", "ready", False, True, True, "keep for reuse"),
        # ... but a half-made persistent machine is not reusable
        ("never", "template", "creating", False, True, False, "delete"),
        ("never", "reuse", "creating", False, True, False, "delete"),
        # a machine kept earlier (scope end) stays and is not kept twice
        ("never", "function", "kept", True, False, True, "already kept"),
        ("never", "session", "ready", True, True, False, "already kept"),
    ],
)
def test_at_run_end_table(
    policy: KeepPolicy,
    kind: str,
    state: str,
    kept: bool,
    persistent: bool,
    failed: bool,
    action: str,
) -> None:
    got = at_run_end(
        policy, kind=kind, state=state, kept=kept, persistent=persistent, failed=failed
    )
    assert got == action


# -- at_run_end: every combination, one rule per test ----------------------------------------

ALL = list(itertools.product(KEEP_POLICIES, KINDS, STATES, BOOLS, BOOLS, BOOLS))


def _id(case: tuple[object, ...]) -> str:
    policy, kind, state, kept, persistent, failed = case
    flags = [f for f, on in (("kept", kept), ("persistent", persistent), ("failed", failed)) if on]
    return "-".join([str(policy), str(kind), str(state), *flags])


def _run_end(case: tuple[KeepPolicy, str, str, bool, bool, bool]) -> str:
    policy, kind, state, kept, persistent, failed = case
    return at_run_end(
        policy, kind=kind, state=state, kept=kept, persistent=persistent, failed=failed
    )


def test_every_combination_is_covered() -> None:
    assert len(ALL) == 3 * 4 * 3 * 2 * 2 * 2
    assert {_run_end(c) for c in ALL} == {"delete", "keep", "keep for reuse", "already kept"}


@pytest.mark.parametrize("case", ALL, ids=[_id(c) for c in ALL])
def test_at_run_end_every_combination(case: tuple[KeepPolicy, str, str, bool, bool, bool]) -> None:
    """The rules of docs: kept stays; ready reusable stays for the next run; shared machines
    follow --orbstack-keep; everything else is deleted (nothing is left behind by accident)."""
    policy, kind, state, kept, persistent, failed = case
    action = _run_end(case)
    if kept:
        assert action == "already kept"
    elif persistent and state == "ready":
        assert action == "keep for reuse"
    elif kind in ("template", "function"):
        assert action == "delete", "only shared machines may outlive the run by keep policy"
    elif policy == "never":
        assert action == "delete"
    elif policy == "always":
        assert action == "keep"
    else:
        assert action == ("keep" if failed else "delete")


def test_shared_kinds() -> None:
    assert frozenset({"session", "reuse"}) == SHARED_KINDS


@pytest.mark.parametrize("policy", KEEP_POLICIES)
def test_nothing_survives_unless_asked(policy: KeepPolicy) -> None:
    """With no reuse and nothing kept, a passing run leaves only what --orbstack-keep=always
    asks for: shared machines, never templates or fresh machines."""
    survivors = {
        kind
        for kind, state in itertools.product(KINDS, STATES)
        if at_run_end(policy, kind=kind, state=state, kept=False, persistent=False, failed=False)
        != "delete"
    }
    assert survivors == ({"session", "reuse"} if policy == "always" else set())


# -- demand ------------------------------------------------------------------------------------


def test_demand_unit_function_is_the_test() -> None:
    unit = demand_unit("function", nodeid="tests/test_a.py::test_x[1]", path="tests/test_a.py")
    assert unit == "tests/test_a.py::test_x[1]"


def test_demand_unit_module_is_the_file() -> None:
    a = demand_unit("module", nodeid="tests/test_a.py::test_x", path="tests/test_a.py")
    b = demand_unit("module", nodeid="tests/test_a.py::test_y", path="tests/test_a.py")
    assert a == b == "tests/test_a.py"


def test_demand_unit_session_is_not_pooled() -> None:
    assert demand_unit("session", nodeid="t.py::test", path="t.py") is None


# -- pool room, threads, waits -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("depth", "in_flight", "ready", "room"),
    [
        (0, 0, 0, 0),
        (2, 0, 0, 2),
        (2, 1, 0, 1),
        (2, 0, 1, 1),
        (2, 1, 1, 0),
        (2, 3, 0, 0),  # over-full (another worker's machines): never negative
        (3, 0, 5, 0),
    ],
)
def test_pool_room(depth: int, in_flight: int, ready: int, room: int) -> None:
    assert pool_room(depth, in_flight=in_flight, ready=ready) == room


@pytest.mark.parametrize(("depth", "threads"), [(0, 2), (1, 2), (2, 4), (5, 10)])
def test_supply_threads(depth: int, threads: int) -> None:
    assert supply_threads(depth) == threads


def test_claim_wait_covers_preparation_twice() -> None:
    assert claim_wait(30.0) == 60.0
    assert claim_wait(0.0) == 0.0


# -- auto_pool_depth (Little's law) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("prepare", "test", "depth"),
    [
        (10.0, 10.0, 1),  # a machine per test time: one ahead is enough
        (10.0, 5.0, 2),
        (10.0, 3.0, 4),  # ceil(3.33)
        (10.0, 20.0, 1),  # tests slower than preparation: still one ahead
        (0.0, 1.0, 1),  # instant preparation: never below one while tests remain
        (9.0, 1.0, 9),
    ],
)
def test_auto_pool_depth_is_prepare_over_test(prepare: float, test: float, depth: int) -> None:
    assert auto_pool_depth(prepare, test, remaining=100) == depth


@pytest.mark.parametrize("remaining", [0, -1])
def test_auto_pool_depth_zero_when_nothing_remains(remaining: int) -> None:
    assert auto_pool_depth(30.0, 1.0, remaining=remaining) == 0
    assert auto_pool_depth(30.0, 1.0, remaining=remaining, max_creates=4, memory_cap=4) == 0


def test_auto_pool_depth_bounded_by_remaining_tests() -> None:
    assert auto_pool_depth(60.0, 1.0, remaining=3) == 3


def test_auto_pool_depth_bounded_by_max_creates() -> None:
    assert auto_pool_depth(60.0, 1.0, remaining=100, max_creates=4) == 4


def test_auto_pool_depth_bounded_by_memory() -> None:
    assert auto_pool_depth(60.0, 1.0, remaining=100, memory_cap=6) == 6


def test_auto_pool_depth_tightest_bound_wins() -> None:
    assert auto_pool_depth(60.0, 1.0, remaining=5, max_creates=3, memory_cap=4) == 3
    assert auto_pool_depth(60.0, 1.0, remaining=2, max_creates=3, memory_cap=4) == 2
    assert auto_pool_depth(60.0, 1.0, remaining=9, max_creates=8, memory_cap=1) == 1


def test_auto_pool_depth_zero_caps_mean_no_cap() -> None:
    assert auto_pool_depth(20.0, 1.0, remaining=100, max_creates=0, memory_cap=0) == 20


@pytest.mark.parametrize("test_seconds", [0.0, 1e-9, -1.0])
def test_auto_pool_depth_tiny_test_time_is_finite(test_seconds: float) -> None:
    """A test measured at (almost) zero seconds must not ask for an unbounded pool or divide
    by zero: test time is floored (at 50 ms), and the other bounds still apply."""
    unbounded = auto_pool_depth(1.0, test_seconds, remaining=10_000)
    assert 1 <= unbounded <= 20
    assert auto_pool_depth(1.0, test_seconds, remaining=100, max_creates=4) == 4
    assert auto_pool_depth(1.0, test_seconds, remaining=3) == 3


@pytest.mark.parametrize(
    ("preparers", "demand", "sources"),
    [
        (4, 1, 1),  # a few machines: clone from the origin alone (a replica would cost more)
        (4, 3, 1),
        (4, 7, 2),
        (4, 16, 2),  # half as many sources as machines in preparation
        (8, 16, 4),
        (8, 6, 2),  # ...but one extra source per two machines to make at most
        (8, 64, 4),
        (16, 400, 4),  # never more than four
        (1, 400, 1),
    ],
)
def test_clone_fan_out(preparers: int, demand: int, sources: int) -> None:
    from pytest_orbstack.policy import clone_fan_out

    assert clone_fan_out(preparers, demand) == sources


# -- bases a run need not make -------------------------------------------------------------


@pytest.mark.parametrize(
    ("uses", "reuse", "open_ended", "skipped"),
    [
        # one template is the base's only user: create it directly
        ([("b1", "tpl-a")], False, False, {"b1"}),
        # the same template asked for by two specs (function and module isolation): still one
        ([("b1", "tpl-a"), ("b1", "tpl-a")], False, False, {"b1"}),
        # two templates (or a template and a session machine) share the base: make it
        ([("b1", "tpl-a"), ("b1", "session-a")], False, False, set()),
        # bare fresh machines are clones of the base itself
        ([("b1", "tpl-a"), ("b1", None)], False, False, set()),
        ([("b1", None)], False, False, set()),
        # per base
        ([("b1", "tpl-a"), ("b2", "tpl-b"), ("b2", None)], False, False, {"b1"}),
        # reuse: a warm run clones the kept base for a changed deploy instead of creating
        ([("b1", "tpl-a")], True, False, set()),
        # factory fixtures may ask for any spec once tests run
        ([("b1", "tpl-a")], False, True, set()),
        ([], False, False, set()),
    ],
)
def test_bases_worth_skipping(
    uses: list[tuple[str, str | None]], reuse: bool, open_ended: bool, skipped: set[str]
) -> None:
    from pytest_orbstack.policy import bases_worth_skipping

    assert bases_worth_skipping(uses, reuse=reuse, open_ended=open_ended) == skipped


def test_base_use_names_what_a_need_derives() -> None:
    from pytest_orbstack.lifecycle import base_key
    from pytest_orbstack.spec import MachineSpec
    from pytest_orbstack.supply import base_use

    role = MachineSpec(image="debian:bookworm", isolation="function", deploy="/d/role.py")
    module = MachineSpec(image="debian:bookworm", isolation="module", deploy="/d/role.py")
    bare = MachineSpec(image="debian:bookworm", isolation="function")
    other = MachineSpec(image="debian:bookworm", isolation="function", deploy="/d/other.py")
    assert base_use(bare, 3) == (base_key(role), None)  # one base for all of them
    assert base_use(role, 3) == base_use(module, 1)  # one template, whatever the isolation
    assert base_use(role, 3) != base_use(other, 3)
    assert base_use(role, None) != base_use(role, 3)  # a session machine is another user
    assert base_use(bare, None)[1] is not None  # a bare session machine is derived too


@pytest.mark.parametrize(
    ("count", "calls"),
    [(0, 0), (1, 1), (4, 1), (7, 1), (8, 2), (12, 3), (16, 4), (40, 4)],
)
def test_delete_chunks(count: int, calls: int) -> None:
    from pytest_orbstack.policy import DELETE_CHUNK, delete_chunks

    names = [f"m{i}" for i in range(count)]
    chunks = delete_chunks(names + names[:2])  # a name twice is deleted once
    assert len(chunks) == calls
    assert sorted(n for c in chunks for n in c) == sorted(names)  # each machine exactly once
    assert all(len(c) >= min(count, DELETE_CHUNK) for c in chunks)


# -- modes that run no test ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dest", "value", "flag"),
    [
        ("collectonly", True, "--collect-only"),
        ("setupplan", True, "--setup-plan"),
        ("showfixtures", True, "--fixtures"),
        ("show_fixtures_per_test", True, "--fixtures-per-test"),
        ("markers", True, "--markers"),
        ("help", True, "--help"),
        ("version", 1, "--version"),  # pytest counts --version
    ],
)
def test_no_test_mode_names_the_flag(dest: str, value: object, flag: str) -> None:
    assert no_test_mode(SimpleNamespace(**{dest: value}, setuponly=False)) == flag


def test_setup_only_and_setup_show_run_tests() -> None:
    assert no_test_mode(SimpleNamespace(setuponly=True, setupshow=True, collectonly=False)) is None
    assert no_test_mode(SimpleNamespace()) is None


# -- wedge -----------------------------------------------------------------------------------


def test_one_machine_alone_never_wedges_the_run() -> None:
    from pytest_orbstack.policy import wedged

    assert not wedged([])
    assert not wedged(["a"])
    assert not wedged(["a", "a", "a", "a"])  # one machine: that machine's problem
    assert not wedged(["a", "b", "c"])  # three attempts are not yet a pattern
    # two machines prepared side by side, each drawing the transient text twice: not a wedge
    assert not wedged(["a", "b", "a", "b"])


def test_machines_of_different_names_failing_wedge_the_run() -> None:
    from pytest_orbstack.policy import wedged

    assert wedged(["a", "b", "c", "d"])
    assert wedged(["a", "a", "b", "c"])
    assert wedged(["gw0-1", "gw1-1", "gw0-1", "gw0-2"])


def test_missing_ip_verdict_retries_a_machine_twice_then_gives_it_up() -> None:
    from pytest_orbstack.policy import missing_ip_verdict

    assert missing_ip_verdict(["a"], "a") == "retry"
    assert missing_ip_verdict(["a", "a"], "a") == "retry"
    assert missing_ip_verdict(["a", "a", "a"], "a") == "give up"
    assert missing_ip_verdict(["a", "b"], "b") == "retry"
    assert missing_ip_verdict(["a", "a", "b"], "b") == "retry"
    assert missing_ip_verdict(["a", "a", "b", "c"], "c") == "wedged"
    # machines prepared side by side interleave in the record: still counted per machine
    assert missing_ip_verdict(["a", "b", "a", "b"], "b") == "retry"
    assert missing_ip_verdict(["a", "b", "a", "b", "a"], "a") == "give up"
