"""Retry policies for machine lifecycle calls (tenacity).

Rules, from the error catalogue (docs/orbctl-contract.md §9):

* only :class:`~pytest_orbstack.errors.TransientError` is retried, with exponential backoff,
  jitter and an overall deadline; permanent errors are raised after exactly one call;
* commands run *inside* a machine (``run``, ``push``, ``pull``) are never retried here;
* a ``create`` or ``clone`` whose client timed out may still be going on in OrbStack (the server
  ignores the client going away): the policy inspects state with ``info`` instead of calling
  ``create`` again - a machine that appears and reaches its final state is success, one in
  ``creating`` is waited for, one that vanished is created again;
* a ``delete`` that finds some names already gone deletes the rest, and waits out a machine that
  is still ``creating`` (``cannot transition from creating to deleting``);
* the missing-IP failure (``setup: machine didn't start in 30s (missing IP address)``) is
  recorded run-wide (:attr:`RetryPolicy.missing_ip`): once machines of different names keep
  failing with it and none starts in between, OrbStack is wedged (orbstack#2688,
  :func:`pytest_orbstack.policy.wedged`) and every create, clone and start from then on fails at
  once with :class:`~pytest_orbstack.errors.OrbStackWedgedError` instead of being retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import tenacity

from pytest_orbstack.coordination import MissingIpRecord
from pytest_orbstack.errors import (
    WEDGED_ADVICE,
    DeadlineExceeded,
    MachineExistsError,
    MachineNotFoundError,
    OrbctlError,
    OrbctlTimeoutError,
    OrbStackWedgedError,
    PermanentError,
    StateError,
    TransientError,
    is_missing_ip,
)
from pytest_orbstack.orbctl import CreateOptions, MachineInfo, Orbctl
from pytest_orbstack.policy import missing_ip_count, missing_ip_verdict, wedged

log = logging.getLogger("pytest_orbstack")

T = TypeVar("T")

#: States a machine passes through on its way to a stable state.
TRANSITIONAL = frozenset({"creating", "provisioning", "starting", "stopping", "deleting"})


@dataclass(frozen=True)
class RetryPolicy:
    """How lifecycle calls are retried.

    ``attempts`` bounds the calls of one operation, ``deadline`` bounds its total time in
    seconds (no backoff sleep is started that would end past it), backoff grows from
    ``initial`` by ``multiplier`` up to ``maximum`` plus up to ``jitter`` random seconds.
    ``poll_interval`` paces state inspection after an ambiguous outcome.
    """

    attempts: int = 5
    initial: float = 1.0
    maximum: float = 20.0
    multiplier: float = 2.0
    jitter: float = 1.0
    deadline: float = 600.0
    poll_interval: float = 0.5
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    #: The run-wide record of missing-IP failures (shared by the run's processes when built on
    #: the run's shared directory; this policy's own otherwise).
    missing_ip: MissingIpRecord = field(default_factory=MissingIpRecord, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.deadline <= 0:
            raise ValueError(f"deadline must be positive, got {self.deadline}")
        if min(self.initial, self.maximum, self.jitter, self.poll_interval) < 0:
            raise ValueError("backoff figures must not be negative")

    @classmethod
    def for_retries(cls, retries: int, missing_ip: MissingIpRecord | None = None) -> RetryPolicy:
        """The default policy with ``retries`` retries (``--orbstack-retries``)."""
        if missing_ip is None:
            return cls(attempts=retries + 1)
        return cls(attempts=retries + 1, missing_ip=missing_ip)

    def machine_call(self, name: str, call: Callable[[], T], *, starts: bool) -> T:
        """One attempt of a create, clone or start of ``name``, watched for the wedge.

        Fails at once when OrbStack is already wedged; records a missing-IP failure and turns
        it into :class:`OrbStackWedgedError` once that makes the run wedged (or into a
        permanent error once this machine failed so too often); a call that ``starts`` the
        machine (create, start) clears the record when it succeeds.
        """
        failures = self.missing_ip.failures()
        if wedged(failures):
            raise _wedged_error(["orbctl"], failures)
        try:
            result = call()
        except OrbctlError as exc:
            if not is_missing_ip(exc):
                raise
            failures = self.missing_ip.failed(name)
            verdict = missing_ip_verdict(failures, name)
            if verdict == "wedged":
                raise _wedged_error(exc.argv, failures, exc) from exc
            if verdict == "give up":
                raise PermanentError(
                    exc.argv,
                    exc.returncode,
                    exc.stderr,
                    exc.stdout,
                    message=(
                        f"{exc.message} ({missing_ip_count(failures, name)} times since a "
                        f"machine last started: not retried)"
                    ),
                ) from exc
            raise
        if starts:
            self.missing_ip.started()
        return result

    def retrying(
        self,
        what: str,
        retry_on: tuple[type[BaseException], ...] = (TransientError,),
    ) -> tenacity.Retrying:
        """A tenacity ``Retrying`` that retries ``retry_on`` errors under this policy."""
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(retry_on),
            stop=(
                tenacity.stop_after_attempt(self.attempts)
                | tenacity.stop_before_delay(self.deadline)
            ),
            wait=(
                tenacity.wait_exponential(
                    multiplier=self.initial, exp_base=self.multiplier, max=self.maximum
                )
                + tenacity.wait_random(0, self.jitter)
            ),
            sleep=self.sleep,
            reraise=True,
            before_sleep=_log_retry(what),
        )

    def call(
        self,
        fn: Callable[[], T],
        what: str,
        retry_on: tuple[type[BaseException], ...] = (TransientError,),
    ) -> T:
        """Call ``fn`` until it returns, retrying only ``retry_on`` errors."""
        return self.retrying(what, retry_on)(fn)


def _wedged_error(
    argv: Sequence[str], failures: Sequence[str], cause: OrbctlError | None = None
) -> OrbStackWedgedError:
    names = list(dict.fromkeys(failures))
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return OrbStackWedgedError(
        list(argv),
        cause.returncode if cause is not None else None,
        cause.stderr if cause is not None else "",
        message=WEDGED_ADVICE.format(count=len(failures), names=shown),
    )


def _log_retry(what: str) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s failed (attempt %d): %s; retrying in %.1fs", what, state.attempt_number, exc, wait
        )

    return before_sleep


def wait_for_state(
    client: Orbctl,
    name: str,
    accept: Collection[str],
    policy: RetryPolicy,
    *,
    deadline: float | None = None,
    require_ip: bool = False,
) -> MachineInfo | None:
    """Poll ``info`` until the machine is in one of ``accept`` states (and has an IPv4 address
    if ``require_ip`` and this orbctl reports addresses at all: OrbStack before mid-2025 never
    does); return ``None`` if it disappears.

    Raises :class:`DeadlineExceeded` when it is still elsewhere at the deadline, and the
    :class:`~pytest_orbstack.errors.OrbctlError` of ``info`` for anything but not-found and
    transient failures (which are polled through).
    """
    limit = time.monotonic() + (deadline if deadline is not None else policy.deadline)
    last: MachineInfo | None = None
    while True:
        try:
            last = client.info(name)
        except MachineNotFoundError:
            return None
        except (TransientError, OrbctlTimeoutError) as exc:
            log.debug("info %s while waiting: %s", name, exc)
        else:
            need_ip = require_ip and client.reports_addresses
            if last.state in accept and (last.ip4 or not need_ip):
                return last
            if last.state not in TRANSITIONAL and last.state not in accept and not require_ip:
                # A stable state we did not ask for (e.g. stopped while waiting for running).
                return last
        if time.monotonic() >= limit:
            state = last.state if last else "unknown"
            raise DeadlineExceeded(
                ["orbctl", "info", name],
                None,
                "",
                message=f"machine {name!r} still {state!r} after waiting for {sorted(accept)}",
            )
        policy.sleep(policy.poll_interval)


def create_machine(
    client: Orbctl,
    policy: RetryPolicy,
    image: str,
    name: str,
    options: CreateOptions | None = None,
    *,
    timeout: float | None = None,
) -> MachineInfo:
    """Create ``name`` and return its info once it is running.

    Transient failures are retried (OrbStack deletes a half-made machine itself).  After a
    timeout the machine's state is inspected instead of creating again.  ``machine already
    exists`` when no earlier attempt of ours could have made it is a permanent error: the name
    belongs to someone else and is never adopted.
    """
    info = _make(
        client,
        policy,
        f"create {name}",
        name,
        lambda: policy.machine_call(
            name, lambda: client.create(image, name, options, timeout=timeout), starts=True
        ),
        final={"running"},
    )
    assert info is not None  # a successful create is always inspected
    return info


def clone_machine(
    client: Orbctl,
    policy: RetryPolicy,
    source: str,
    name: str,
    *,
    timeout: float | None = None,
) -> MachineInfo | None:
    """Clone ``source`` into ``name`` (which OrbStack leaves stopped).

    A clone call that succeeds is not followed by ``info``: ``clone`` is synchronous and the new
    machine exists, stopped (docs/orbctl-contract.md §2), so ``None`` is returned.  Only after a
    timed-out or transient attempt is the machine's state inspected (and its info returned).
    """

    def clone() -> None:
        policy.machine_call(name, lambda: client.clone(source, name, timeout=timeout), starts=False)

    return _make(
        client,
        policy,
        f"clone {source} -> {name}",
        name,
        clone,
        final={"stopped", "running"},
        inspect_success=False,
    )


def _make(
    client: Orbctl,
    policy: RetryPolicy,
    what: str,
    name: str,
    make: Callable[[], None],
    final: Collection[str],
    *,
    inspect_success: bool = True,
) -> MachineInfo | None:
    maybe_ours = False  # an earlier attempt may have made the machine (timeout / transient)

    def attempt() -> MachineInfo | None:
        nonlocal maybe_ours
        if maybe_ours:
            settled = _settle_after_ambiguous(client, name, policy, final)
            if settled is not None:
                return settled
        try:
            make()
        except (OrbctlTimeoutError, TransientError):
            maybe_ours = True
            raise
        except MachineExistsError as exc:
            if not maybe_ours:
                raise
            raise TransientError(exc.argv, exc.returncode, exc.stderr) from exc
        return _info_when(client, name, policy, final) if inspect_success else None

    return policy.call(attempt, what, (TransientError, OrbctlTimeoutError))


def start_machine(
    client: Orbctl, policy: RetryPolicy, name: str, *, timeout: float | None = None
) -> None:
    """``start NAME`` (idempotent in OrbStack), retrying transient errors and timeouts."""

    def attempt() -> None:
        try:
            policy.machine_call(name, lambda: client.start(name, timeout=timeout), starts=True)
        except StateError as exc:
            # cannot transition from creating/stopping to starting: wait it out, then retry.
            wait_for_state(client, name, {"running", "stopped"}, policy)
            raise TransientError(exc.argv, exc.returncode, exc.stderr) from exc

    policy.call(attempt, f"start {name}", (TransientError, OrbctlTimeoutError))


def stop_machine(
    client: Orbctl, policy: RetryPolicy, name: str, *, timeout: float | None = None
) -> None:
    policy.call(
        lambda: client.stop(name, timeout=timeout),
        f"stop {name}",
        (TransientError, OrbctlTimeoutError),
    )


def delete_machines(
    client: Orbctl,
    policy: RetryPolicy,
    names: Sequence[str],
    *,
    timeout: float | None = None,
) -> list[str]:
    """Delete ``names`` in as few ``delete -f`` calls as possible; return the names deleted.

    Names already gone are not an error (a previous attempt, or a failed create, removed them).
    A machine still ``creating`` is waited for, then deleted.
    """
    pending = list(dict.fromkeys(names))
    deleted: list[str] = []
    if not pending:
        return deleted

    def attempt() -> None:
        nonlocal pending
        while pending:
            try:
                client.delete(*pending, timeout=timeout)
            except MachineNotFoundError:
                # OrbStack resolves every name before deleting any: drop the missing ones.
                existing = {r.name for r in client.list()}
                remaining = [n for n in pending if n in existing]
                if len(remaining) == len(pending):
                    raise  # list and delete disagree: do not loop
                pending = remaining
                continue
            except StateError as exc:
                for name in pending:
                    wait_for_state(client, name, {"running", "stopped"}, policy)
                raise TransientError(exc.argv, exc.returncode, exc.stderr) from exc
            deleted.extend(pending)
            pending = []

    policy.call(attempt, f"delete {' '.join(pending)}", (TransientError, OrbctlTimeoutError))
    return deleted


def _info_when(
    client: Orbctl, name: str, policy: RetryPolicy, final: Collection[str]
) -> MachineInfo:
    info = wait_for_state(client, name, final, policy)
    if info is None:
        raise TransientError([], None, "", message=f"machine {name!r} vanished after creation")
    return info


def _settle_after_ambiguous(
    client: Orbctl, name: str, policy: RetryPolicy, final: Collection[str]
) -> MachineInfo | None:
    """After a timed-out or ambiguous create/clone: wait until the machine reaches ``final`` or
    disappears.  Returns its info, or ``None`` if it is gone (safe to create again)."""
    info = wait_for_state(client, name, final, policy)
    if info is None:
        return None
    if info.state in final:
        return info
    raise OrbctlError(
        ["orbctl", "info", name],
        None,
        "",
        message=f"machine {name!r} ended {info.state!r} after an interrupted create",
    )


__all__ = [
    "TRANSITIONAL",
    "DeadlineExceeded",
    "RetryPolicy",
    "clone_machine",
    "create_machine",
    "delete_machines",
    "start_machine",
    "stop_machine",
    "wait_for_state",
]
