"""The plugin's decisions about machines, as pure functions.

Nothing here runs ``orbctl``, touches files or starts threads: the machinery
(:mod:`~pytest_orbstack.lifecycle`, :mod:`~pytest_orbstack.supply`, :mod:`~pytest_orbstack.plugin`)
asks these functions and acts on the answer, so each policy has one home and unit tests that run
anywhere (macOS included, no simulator).

* **keep**: whether a machine survives its scope or the run (``--orbstack-keep``, modelled on
  pytest's ``tmp_path_retention_policy``);
* **demand**: which unit of work a fresh machine serves (a test, a module);
* **pool depth**: how many fresh machines to keep in preparation ahead of demand;
* **wedge**: whether OrbStack has stopped giving machines addresses (orbstack#2688), so the
  missing-IP failure is no longer worth retrying.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

from pytest_orbstack.settings import KeepPolicy

# -- keep ------------------------------------------------------------------------------------

#: What happens to one of the run's recorded machines when the run ends.
RunEndAction = Literal["delete", "keep", "keep for reuse", "already kept"]
#: Registry record kinds shared by the whole run (a failing test keeps them with on-failure).
SHARED_KINDS = frozenset({"session", "reuse"})


def keep_after_use(policy: KeepPolicy, *, failed: bool) -> bool:
    """Whether a machine that served tests is kept when its scope ends."""
    return policy == "always" or (policy == "on-failure" and failed)


def at_run_end(
    policy: KeepPolicy,
    *,
    kind: str,
    state: str,
    kept: bool,
    persistent: bool,
    failed: bool,
) -> RunEndAction:
    """What the run's end does with one of its recorded machines.

    Machines already kept stay; reusable machines (``--orbstack-reuse``) that became ready stay
    for the next run; shared machines follow the keep policy; everything else this run made
    (templates, replicas, fresh machines left by a failure, half-made machines) is deleted.
    """
    if kept:
        return "already kept"
    if persistent and state == "ready":
        return "keep for reuse"
    if kind in SHARED_KINDS and keep_after_use(policy, failed=failed):
        return "keep"
    return "delete"


# -- demand ----------------------------------------------------------------------------------


#: pytest's modes that run no test body: they must make no machine (``--setup-plan`` shows
#: what fixtures *would* do; the others only list).  ``--setup-only`` runs fixtures, so it is
#: not here.  Option destinations as pytest names them (``config.option``).
NO_TEST_MODES: tuple[tuple[str, str], ...] = (
    ("collectonly", "--collect-only"),
    ("setupplan", "--setup-plan"),
    ("showfixtures", "--fixtures"),
    ("show_fixtures_per_test", "--fixtures-per-test"),
    ("markers", "--markers"),
    ("help", "--help"),
    ("version", "--version"),
)


def no_test_mode(option: object) -> str | None:
    """The mode (its command-line flag) in which this run executes no test, or ``None``.
    ``option`` is pytest's ``config.option`` namespace: no machine is planned or warmed up in
    such a mode."""
    for dest, flag in NO_TEST_MODES:
        if getattr(option, dest, False):
            return flag
    return None


def demand_unit(isolation: str, *, nodeid: str, path: str) -> str | None:
    """The unit one fresh machine serves: a test (function), a test file (module), or
    ``None`` for a session machine (made once, not drawn from the pool)."""
    if isolation == "function":
        return nodeid
    if isolation == "module":
        return path
    return None


# -- pool depth ------------------------------------------------------------------------------


def pool_room(depth: int, *, in_flight: int, ready: int) -> int:
    """How many more machines to start preparing now to keep ``depth`` on their way."""
    return max(0, depth - in_flight - ready)


def supply_threads(depth: int) -> int:
    """Background threads for a pool of ``depth`` (preparing and warm-up side by side)."""
    return max(2, depth * 2)


def claim_wait(retry_deadline: float) -> float:
    """How long a test waits for a machine that is being prepared before making its own:
    the preparation's own retry deadline, twice (clone/create, then start and ready)."""
    return retry_deadline * 2


#: Machines in preparation per spec and process before anything was measured: enough to keep
#: a worker busy through short tests while the first preparation times come in (never more than
#: the tests that remain: demand is reserved before a machine is prepared).
INITIAL_DEPTH = 4
#: The automatic depth never goes beyond this (each machine in preparation holds memory).
AUTO_MAX_DEPTH = 8
#: What one idle machine is assumed to hold, for the memory bound of the automatic depth.
MACHINE_MEMORY = 512 * 1024 * 1024


def machines_in_memory(available_bytes: int, workers: int) -> int:
    """How many more machines this process may keep in preparation without crowding memory:
    its share (per worker) of what is available, at :data:`MACHINE_MEMORY` each; at least 1."""
    return max(1, available_bytes // MACHINE_MEMORY // max(1, workers))


def clone_fan_out(preparers: int, demand: int) -> int:
    """How many clone sources (an origin and its replicas) to keep for ``preparers`` machines
    prepared at once, with ``demand`` fresh machines to make in the run.

    A source is held only for the clone itself, a small part of a machine's preparation
    (clone, start, ready), so half as many sources as preparers keep clones from queueing; each
    extra source costs a clone of its own, paid back by the second clone made from it, so one
    per two machines still to make at most (a run of a few machines clones from the origin
    alone); never more than four.
    """
    useful = min(preparers, demand // 2)
    return max(1, min(4, math.ceil(useful / 2)))


#: Machines per ``delete`` call when many go at once (the run's end), and how many such calls
#: run side by side: a delete costs a round trip plus a share per machine, so a long list is
#: quicker as a few calls at once than as one.
DELETE_CHUNK = 4
DELETE_CALLS = 4


def delete_chunks(names: Sequence[str]) -> list[list[str]]:
    """Split the machines to delete into at most :data:`DELETE_CALLS` calls of about equal
    size, :data:`DELETE_CHUNK` or more each (a short list stays one call)."""
    names = list(dict.fromkeys(names))
    calls = max(1, min(DELETE_CALLS, len(names) // DELETE_CHUNK))
    return [names[i::calls] for i in range(calls)] if names else []


def bases_worth_skipping(
    uses: Iterable[tuple[str, str | None]], *, reuse: bool, open_ended: bool
) -> set[str]:
    """Bases a run need not make: those whose only user is one derived machine.

    ``uses`` pairs a base key with what is made from it: a derived machine's key (a template or
    a session machine, provisioned or not) or ``None`` for fresh machines cloned from the bare
    base.  A base serving a single derived machine would only add a stop, a clone and a start
    before that machine (on the run's critical path), so that machine is created directly,
    still one ``create`` per base.  Never with ``reuse`` (a warm run clones the kept base for a
    changed deploy instead of creating) nor in an ``open_ended`` run (factory fixtures may ask
    for machines of any spec once tests run).
    """
    if reuse or open_ended:
        return set()
    derived: dict[str, set[str]] = {}
    bare: set[str] = set()
    for base, user in uses:
        if user is None:
            bare.add(base)
        else:
            derived.setdefault(base, set()).add(user)
    return {base for base, users in derived.items() if len(users) == 1 and base not in bare}


def auto_pool_depth(
    prepare_seconds: float,
    test_seconds: float,
    *,
    remaining: int,
    max_creates: int = 0,
    memory_cap: int = 0,
) -> int:
    """Pool depth by Little's law: machines in preparation = preparation time / test time.

    With one test at a time per worker, a machine must be started ``prepare / test`` tests
    ahead for none to wait.  Bounded by the tests that remain, the run-wide create cap
    (``--orbstack-max-creates``, 0 = none) and ``memory_cap`` (machines that fit in memory, 0 =
    unknown); never below one while tests remain.
    """
    if remaining <= 0:
        return 0
    test = max(test_seconds, 0.05)
    depth = max(1, math.ceil(prepare_seconds / test))
    for cap in (remaining, max_creates, memory_cap):
        if cap > 0:
            depth = min(depth, cap)
    return depth


# -- wedge -----------------------------------------------------------------------------------

#: A wedged OrbStack (docs/orbctl-contract.md §16, orbstack#2688): after heavy create/clone +
#: delete churn every new machine fails with "setup: machine didn't start in 30s (missing IP
#: address)", for good.  It is told from a transient failure by breadth: at least
#: WEDGE_NAMES different machines and WEDGE_FAILURES attempts in all failed that way, with no
#: machine starting in between.  Three names, not two: two machines that each drew the
#: transient text once or twice while the pool prepared them side by side (the fault suite
#: saw this with 2 names / 3 attempts, docs/reliability.md) are not yet a pattern; on a wedged
#: OrbStack the fourth attempt is reached after about two minutes instead of ~25.
WEDGE_NAMES = 3
WEDGE_FAILURES = 4
#: Attempts one machine gets for the missing-IP failure while the run is not (yet) wedged:
#: one machine failing once or twice is retried, as any transient failure; a third failure in
#: a row is not worth a fourth 30-second attempt (the 2.2.0 fix made the old transient
#: #2213 case rare, so a machine failing three times is almost certainly the wedge).
MISSING_IP_ATTEMPTS = 3

#: What the missing-IP failure of one attempt leads to.
MissingIpVerdict = Literal["retry", "give up", "wedged"]


def wedged(failures: Sequence[str]) -> bool:
    """Whether OrbStack is wedged, from the names of the machine attempts that failed with the
    missing-IP text since the last machine that started (run-wide, oldest first)."""
    return len(failures) >= WEDGE_FAILURES and len(set(failures)) >= WEDGE_NAMES


def missing_ip_verdict(failures: Sequence[str], name: str) -> MissingIpVerdict:
    """After ``name``'s attempt failed with the missing-IP text (already the last entry of
    ``failures``): retry it, give this machine up (it failed :data:`MISSING_IP_ATTEMPTS` times
    since a machine last started), or stop trying machines at all (:func:`wedged`).

    A machine's failures are counted wherever they stand in the run-wide record: machines
    prepared side by side (the pool, xdist workers) interleave there, and counting only
    adjacent failures gave neither of two interleaved machines up (13 failing attempts on a
    wedged OrbStack with a pool of 2 instead of 7, tests/reliability/test_wedge.py)."""
    if wedged(failures):
        return "wedged"
    return "give up" if missing_ip_count(failures, name) >= MISSING_IP_ATTEMPTS else "retry"


def missing_ip_count(failures: Sequence[str], name: str) -> int:
    """How many of the run's missing-IP failures since a machine last started are ``name``'s."""
    return sum(1 for failed in failures if failed == name)


__all__ = [
    "AUTO_MAX_DEPTH",
    "DELETE_CALLS",
    "DELETE_CHUNK",
    "INITIAL_DEPTH",
    "MACHINE_MEMORY",
    "MISSING_IP_ATTEMPTS",
    "WEDGE_FAILURES",
    "WEDGE_NAMES",
    "MissingIpVerdict",
    "SHARED_KINDS",
    "RunEndAction",
    "at_run_end",
    "auto_pool_depth",
    "bases_worth_skipping",
    "claim_wait",
    "clone_fan_out",
    "delete_chunks",
    "demand_unit",
    "keep_after_use",
    "machines_in_memory",
    "missing_ip_count",
    "missing_ip_verdict",
    "no_test_mode",
    "pool_room",
    "supply_threads",
    "wedged",
]
