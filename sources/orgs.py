"""The orgs a poller replica polls, and their turns: :class:`OrgPoller` (one org: its client, its own
governor, its mappings, its objects' pollers) and :class:`Turns` (which polls run now, and what a poll's
outcome does to its org). :mod:`sfsync.sources.poller` describes the whole and runs the Kafka side.

- **Turns.** Polls run as tasks, at most ``concurrent_polls`` at once and one per org at a time; the due
  (org, object) pairs are served in a round robin over orgs (:func:`~sfsync.sources.schedule.pick_due`),
  so a busy org cannot take the turns of idle ones, and an org slow to answer holds one task, never the
  loop. An org's check (with the registry), a poll and a quarantined object's recheck are all turns.
- **Holds** (``isolated``: with the registry, where one org's trouble must not stop the others). An org that
  answers no call is held and tried again on a doubling backoff (``hold_recheck_s`` .. ``hold_recheck_max_s``);
  one whose login is refused or which refuses the integration, on the governor's auth backoff; one that
  cannot answer its mappings, every ``quarantine_recheck_s``. A CONNECTION entry per workspace when a hold
  starts (WARNING for an outage, ERROR for the others; an outage outlasting ``retry_timeout_s``: one
  ERROR), ``ORG_RESTORED`` (INFO) when the org answers again; ``sfsync_poller_orgs_held{cause}``. Not
  isolated (one org, no registry), a failure is handled as the poller always did: retried at the next
  poll, a fatal one stops the poller.

Every reading of the time here is ``monotonic`` (injected: the tests' fake clock).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

import httpx

from sfsync.errors import Category, FatalError, Level, RetriableError, SfsyncError
from sfsync.mapping import MappingError, MappingFile
from sfsync.ops.errorlog import ErrorLogEntry, entry_for
from sfsync.salesforce import BudgetTracker, DailyLimitExceeded, SalesforceClient, SalesforceSettings
from sfsync.salesforce.auth import AuthProvider
from sfsync.salesforce.client import new_transport
from sfsync.salesforce.drift import is_drift, named_fields
from sfsync.salesforce.errors import NO_RESPONSE, AuthenticationError, SalesforceError
from sfsync.salesforce.governor import BudgetPausedError, Governor, GovernorSettings
from sfsync.sources import rules as core
from sfsync.sources.metrics import SourceMetrics
from sfsync.sources.objects import (
    FencedError,
    ObjectPoller,
    ObservingTransport,
    StoppingError,
    check_org,
    describe_plans,
)
from sfsync.sources.ownership import change_workspace
from sfsync.sources.schedule import Hold, HoldCause, hold_after, pick_due
from sfsync.sources.settings import SourceSettings
from sfsync.workspaces.logins import RefreshTokenWriteBack
from sfsync.workspaces.records import ENV_CONNECTION_ID, Connection, Workspace

__all__ = [
    "CHECK",
    "ORG_RESTORED",
    "QUARANTINED",
    "RESTORED",
    "OrgPoller",
    "PollerReport",
    "Turns",
    "hold_cause_of",
    "is_outage",
]

QUARANTINED = "POLL_QUARANTINED"
"""The error-log code of an object whose polls were quarantined for drift."""
RESTORED = "POLL_RESTORED"
"""The error-log code (INFO) of a quarantine lifted."""
ORG_RESTORED = "ORG_RESTORED"
"""The error-log code (INFO) of an org polled again after a hold (with the workspace registry)."""
CHECK = ""
"""The pseudo object of an org's check in the turns (it sorts before every object)."""

log = logging.getLogger(__name__)


@dataclass
class PollerReport:
    """What one run did."""

    polls: int = 0
    pages: int = 0
    changes: int = 0
    api_calls: int = 0
    objects: list[str] = field(default_factory=list)


def is_outage(error: SfsyncError) -> bool:
    """Whether Salesforce answered nothing (a timeout, a refused connection, a 5xx): the org is down."""
    return isinstance(error, SalesforceError) and (error.status == NO_RESPONSE or error.status >= 500)


class OrgPoller:
    """One org's share of the poller (a connection): its Salesforce client, its own governor over its own
    API budget, the mapping files its workspaces run and what they select, and a poller per object it has
    taken over.

    ``files``: the distinct mapping files (one for ``env``: the configured one); ``workspaces``: every
    workspace using the connection (none for ``env``); ``built_from``: the registry's record it was opened
    from and ``write_back`` the hook writing a rotated refresh token back (None for ``env``).
    ``on_response``: every answer of its client; ``record``: an error-log entry; ``sleep`` / ``governed_sleep``:
    the process's sleeps, cut short when it stops.
    """

    def __init__(
        self,
        connection_id: str,
        salesforce_settings: SalesforceSettings,
        *,
        files: Sequence[MappingFile],
        settings: SourceSettings,
        governor_settings: GovernorSettings,
        on_response: Callable[[httpx.Request, httpx.Response], None],
        record: Callable[[ErrorLogEntry], None],
        sleep: Callable[[float], Awaitable[None]],
        governed_sleep: Callable[[float], Awaitable[None]],
        workspaces: Sequence[Workspace] = (),
        auth: AuthProvider | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        built_from: Connection | None = None,
        write_back: RefreshTokenWriteBack | None = None,
    ) -> None:
        self.connection_id = connection_id
        self.files = list(files)
        self.settings = settings
        self.plans = {p.sobject: p for p in core.merged_plans(self.files, settings.objects)}
        self.workspaces = tuple(workspaces)
        self.built_from = built_from
        self.write_back = write_back
        self._record = record
        self.budget = BudgetTracker()
        self.governor = Governor.from_settings(
            self.budget, governor_settings, sleep=governed_sleep, on_pause=self.record
        )
        self.client = SalesforceClient(
            salesforce_settings,
            auth=auth,
            transport=ObservingTransport(transport or new_transport(), on_response),
            budget=self.budget,
            sleep=sleep,
            on_refresh_token=write_back,
        )
        self.objects: dict[str, ObjectPoller] = {}
        """The objects taken over, by name."""
        self.fenced_until: dict[str, float] = {}
        """Objects another replica took over, and when this one may try them again (``time.monotonic``)."""
        self.checked = False
        """Whether the org answered what its mappings select (:meth:`Poller._check`)."""
        self.check_due = 0.0
        """When the check may run (after a budget pause)."""
        self.hold: Hold[HoldCause] | None = None
        """Why and until when the org is not polled (None: it is)."""
        self.hold_reported = False
        """Whether the hold's outage outlasted ``retry_timeout_s`` and its ERROR entry was recorded."""

    def __repr__(self) -> str:
        return f"OrgPoller({self.connection_id!r}, objects={sorted(self.objects)})"

    @property
    def workspace_id(self) -> str | None:
        """The workspace its changes name (:func:`~sfsync.sources.ownership.change_workspace`)."""
        return change_workspace(self.workspaces)

    def key_of(self, sobject: str) -> str:
        """The checkpoint key of one of its objects (:func:`~sfsync.sources.rules.checkpoint_key`)."""
        return core.checkpoint_key(self.connection_id, sobject)

    def checks(self, only: str | None = None) -> list[tuple[MappingFile, list[core.ObjectPlan]]]:
        """Each mapping file with the plans of the objects it polls (``only``: that object's), to check."""
        out = []
        for file in self.files:
            plans = core.plans_from_mappings(file, [only] if only is not None else self.settings.objects)
            if plans or only is None:
                out.append((file, plans))
        return out

    def record(self, entry: ErrorLogEntry) -> None:
        """Record ``entry`` about this org: once per workspace of the connection (each naming it), with the
        connection's id in its details; ``env``'s as it comes."""
        if self.connection_id == ENV_CONNECTION_ID:
            self._record(entry)
            return
        details = {**entry.details, "connection_id": self.connection_id}
        spaces: list[str | None] = [w.workspace_id for w in self.workspaces] or [None]
        for index, workspace in enumerate(spaces):
            entry_id = entry.entry_id if index == 0 else str(uuid.uuid4())
            self._record(replace(entry, details=details, workspace_id=workspace, entry_id=entry_id))

    def on_daily_limit(self, error: DailyLimitExceeded) -> None:
        """Salesforce refused a call, the allocation is spent: the governor pauses every call of this org.

        Salesforce sends no Retry-After (the client's default is an hour): pause at most
        ``pause_s``, then one probe call looks again. The governor records the pause (``on_pause``).
        """
        pause_s = self.governor.policy.pause_s
        if error.retry_after is None or error.retry_after > pause_s:
            error.retry_after = pause_s
        self.governor.on_daily_limit(error)

    def due(self) -> dict[str, float]:
        """Object -> when it is due (a quarantined one: its recheck), or the org's check when not checked."""
        if not self.checked:
            return {CHECK: self.check_due}
        return {
            name: (o.recheck_at if o.quarantined is not None else o.next_due)
            for name, o in self.objects.items()
            if o.active
        }

    async def aclose(self) -> None:
        await self.client.aclose()


class Turns:
    """The polls of the orgs a replica polls (see the module doc): :meth:`dispatch` starts the due ones,
    :meth:`harvest` collects those that ended, :meth:`settle` waits for those in flight.

    ``orgs``: the replica's orgs by connection id (the poller adds and removes them; one it lets go is
    handed to :meth:`retire`). ``release(org, object)``: let an object go (another replica took it over).
    ``isolated``: hold an org on its failures instead of stopping (see the module doc).
    """

    def __init__(
        self,
        orgs: dict[str, OrgPoller],
        *,
        settings: SourceSettings,
        governor_settings: GovernorSettings,
        metrics: SourceMetrics,
        report: PollerReport,
        release: Callable[[OrgPoller, str], None],
        isolated: bool,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.orgs = orgs
        self.settings = settings
        self.governor_settings = governor_settings
        self.metrics = metrics
        self.report = report
        self._release = release
        self.isolated = isolated
        self.monotonic = monotonic
        self._tasks: dict[str, _Flight] = {}
        self._last_turn: str | None = None
        self._retired: list[OrgPoller] = []

    @property
    def in_flight(self) -> list[asyncio.Future[int]]:
        """The turns in flight."""
        return [flight.task for flight in self._tasks.values()]

    def retire(self, org: OrgPoller) -> None:
        """``org`` was let go (its objects released): its client is closed once its turn in flight ended."""
        if org.hold is not None:
            self.metrics.orgs_held.labels(cause=org.hold.cause).dec()
        self._retired.append(org)

    async def close_retired(self, *, every: bool = False) -> None:
        """Close the clients of the orgs let go whose turn in flight ended (``every``: all of them, and the
        orgs still polled too: the poller is closing)."""
        flying = [flight.org for flight in self._tasks.values()]
        done = [o for o in self._retired if every or all(o is not f for f in flying)]
        for org in done:
            self._retired.remove(org)
            await org.aclose()
        if every:
            for org in self.orgs.values():
                await org.aclose()

    def hold_waits(self, cause: HoldCause) -> tuple[float, float]:
        """(first wait, longest wait) of a hold of ``cause``."""
        if cause is HoldCause.ORG_DOWN:
            return self.settings.hold_recheck_s, self.settings.hold_recheck_max_s
        if cause is HoldCause.MAPPING:
            recheck = self.settings.quarantine_recheck_s or float("inf")
            return recheck, recheck
        return self.governor_settings.auth_pause_s, self.governor_settings.auth_pause_max_s

    def _hold(self, org: OrgPoller, cause: HoldCause, error: SfsyncError) -> None:
        """The org answered no call, refused the login or the integration, or cannot answer its mappings: it
        is not polled until the hold ends (the others are). A CONNECTION entry per workspace when the hold
        starts or changes cause (WARNING for an outage, ERROR for the others), and one ERROR once an
        outage outlasts ``retry_timeout_s``."""
        now = self.monotonic()
        previous = org.hold
        initial, most = self.hold_waits(cause)
        org.hold = hold_after(previous, cause, now, error.log_code(), initial_s=initial, max_s=most)
        if previous is None or previous.cause is not cause:
            if previous is not None:
                self.metrics.orgs_held.labels(cause=previous.cause).dec()
            self.metrics.orgs_held.labels(cause=cause).inc()
            org.hold_reported = False
            level = Level.WARNING if cause is HoldCause.ORG_DOWN else Level.ERROR
        elif cause is HoldCause.ORG_DOWN and not org.hold_reported:
            if not self.settings.retry_policy().expired(org.hold.since, now):
                return
            org.hold_reported = True
            level = Level.ERROR
        else:
            return
        wait = org.hold.until - now
        base = entry_for(error)
        message = (
            f"the org of connection {org.connection_id} is held ({cause}) for {now - org.hold.since:.0f}s: "
            f"{base.message}; tried again in {wait:.0f}s, the other orgs are polled as usual"
        )
        details = {**base.details, "hold": str(cause), "retry_in_s": f"{wait:.0f}"}
        org.record(replace(base, category=Category.CONNECTION, level=level, message=message, details=details))

    def _served(self, org: OrgPoller) -> None:
        """The org answered: a hold of it, if any, is over (one INFO entry)."""
        if org.hold is None:
            return
        hold, org.hold = org.hold, None
        self.metrics.orgs_held.labels(cause=hold.cause).dec()
        org.record(
            ErrorLogEntry(
                category=Category.CONNECTION,
                code=ORG_RESTORED,
                message=f"the org of connection {org.connection_id} answers again after {hold.cause} "
                f"({self.monotonic() - hold.since:.0f}s): polling resumes from its checkpoints",
                level=Level.INFO,
                details={"hold": str(hold.cause)},
            )
        )

    async def _check(self, org: OrgPoller) -> int:
        """With the registry: describe what the org's mapping files select (:func:`check_org`, one attempt); a
        failure holds the org."""

        async def go() -> None:  # a budget pause ends the check: tried again when it ends
            await org.governor.before_call(wait_max_s=self.settings.poll_interval_s)

        try:
            for file, plans in org.checks():
                await check_org(org.client, file, plans, go)
        except StoppingError:
            return 0
        except BudgetPausedError as exc:
            org.check_due = self.monotonic() + (exc.retry_after or self.settings.poll_interval_s)
            return 0
        except DailyLimitExceeded as exc:
            org.on_daily_limit(exc)
            org.check_due = self.monotonic() + (org.governor.pause_left_s() or self.settings.poll_interval_s)
            return 0
        except MappingError as exc:
            self._hold(org, HoldCause.MAPPING, exc)
            return 0
        except RetriableError as exc:
            self._hold(org, HoldCause.ORG_DOWN, exc)
            return 0
        except FatalError as exc:
            self._hold(org, hold_cause_of(exc), exc)
            return 0
        org.checked = True
        self._served(org)
        return 0

    async def _poll(self, org: OrgPoller, poller: ObjectPoller) -> int:
        isolated = self.isolated
        try:
            found = await poller.poll_once()
            poller.recovered()
            self._served(org)
        except StoppingError:
            return 0
        except BudgetPausedError as exc:  # the governor holds calls: poll again when it lets them go
            poller.next_due = self.monotonic() + (exc.retry_after or self.settings.poll_interval_s)
            return 0
        except DailyLimitExceeded as exc:  # the governor's pause, not a failure of this object's polls
            org.on_daily_limit(exc)
            found = 0
        except RetriableError as exc:  # retried at the next poll: this loop is the poll's one retry owner
            if isolated and is_outage(exc):
                self._hold(org, HoldCause.ORG_DOWN, exc)
                return 0
            entry = poller.failed(exc, self.monotonic())
            if entry is not None:
                org.record(entry)
            else:
                log.warning("%s: poll failed again, retrying at the next poll: %s", poller.checkpoint_key, exc)
            found = 0
        except FencedError as exc:
            log.warning("%s: another replica took it over: %s", poller.checkpoint_key, exc)
            if org.objects.get(poller.sobject) is poller:
                self._release(org, poller.sobject)
                org.fenced_until[poller.sobject] = self.monotonic() + self.settings.session_timeout_ms / 1000
            return 0
        except FatalError as exc:
            if is_drift(exc):  # a field it selects, or the object, is gone: quarantine this object only
                self._quarantine(org, poller, exc)
                return 0
            if isolated:
                self._hold(org, hold_cause_of(exc), exc)
                return 0
            org.record(entry_for(exc, sobject=poller.sobject))
            raise
        self.report.polls += 1
        self.report.changes += found
        self.report.pages = sum(o.pages for each in self.orgs.values() for o in each.objects.values())
        poller.schedule(found > 0, self.monotonic(), not_before_s=org.governor.pause_left_s())
        return found

    def _quarantine(self, org: OrgPoller, poller: ObjectPoller, error: FatalError) -> None:
        """Stop polling ``poller``'s object until the org can answer its query again (see the module
        docstring): one ERROR entry, the gauge at 1, a recheck in ``quarantine_recheck_s``."""
        entry = entry_for(error, sobject=poller.sobject)
        fields = named_fields(error)
        where = ", ".join(f"{poller.sobject}.{f}" for f in fields) or poller.sobject
        recheck = self.settings.quarantine_recheck_s
        message = (
            f"polls of {poller.sobject} are quarantined: {where}: {entry.code} {entry.message}; the other objects "
            + (f"keep polling; checked again every {recheck:g}s" if recheck > 0 else "keep polling until a restart")
        )
        org.record(
            replace(
                entry,
                category=Category.CONNECTION,
                code=QUARANTINED,
                message=message,
                details={**entry.details, "salesforce_code": entry.code},
            )
        )
        poller.quarantined = entry.code
        poller.recheck_at = self.monotonic() + recheck if recheck > 0 else float("inf")
        self.metrics.quarantined.labels(sobject=poller.sobject).set(1)

    async def _recheck(self, org: OrgPoller, poller: ObjectPoller) -> int:
        """Describe a quarantined object again (no cache); lift the quarantine once
        :func:`~sfsync.sources.rules.org_problems` finds nothing wrong with its query."""
        poller.recheck_at = self.monotonic() + self.settings.quarantine_recheck_s

        async def go() -> None:  # the other objects' polls are not held longer than a poll interval
            await org.governor.before_call(wait_max_s=self.settings.poll_interval_s)

        problems: list[str] = []
        try:
            for file, plans in org.checks(poller.sobject):
                describes = await describe_plans(org.client, file, plans, go, refresh=True)
                problems += core.org_problems(file, plans, describes)
        except RetriableError:  # a transient fault, the budget's pause, stopping: looked at again later
            return 0
        if problems:
            return 0
        poller.quarantined = None
        poller.next_due = self.monotonic()
        self.metrics.quarantined.labels(sobject=poller.sobject).set(0)
        org.record(
            ErrorLogEntry(
                category=Category.CONNECTION,
                code=RESTORED,
                message=f"the org answers the polls of {poller.sobject} again: polling resumes from its checkpoint",
                level=Level.INFO,
                sobject=poller.sobject,
            )
        )
        return 0

    def dispatch(self, now: float) -> float:
        """Start the polls due at ``now`` (:func:`pick_due`: a round robin over the orgs, one poll in flight per
        org, at most ``concurrent_polls``); returns when something not started is due next."""
        due = {cid: org.due() for cid, org in self.orgs.items()}
        held = {cid for cid, org in self.orgs.items() if org.hold is not None and org.hold.until > now}
        slots = self.settings.concurrent_polls - len(self._tasks)
        for cid, name in pick_due(due, now, after=self._last_turn, busy=self._tasks, held=held, slots=slots):
            org = self.orgs[cid]
            self._last_turn = cid
            if name == CHECK:
                work: Awaitable[int] = self._check(org)
            else:
                poller = org.objects[name]
                work = self._recheck(org, poller) if poller.quarantined is not None else self._poll(org, poller)
            self._tasks[cid] = _Flight(org, asyncio.ensure_future(work))
        if len(self._tasks) >= self.settings.concurrent_polls:
            return now + 0.2
        upcoming = [
            org.hold.until if cid in held and org.hold is not None else min(due[cid].values(), default=now + 0.2)
            for cid, org in self.orgs.items()
            if cid not in self._tasks and (due[cid] or cid in held)
        ]
        return min(upcoming, default=now + 0.2)

    def harvest(self) -> int:
        """Collect the polls that ended: the changes they found (a fatal error of one is raised here)."""
        found = 0
        for cid, flight in [(c, f) for c, f in self._tasks.items() if f.task.done()]:
            del self._tasks[cid]
            if not flight.task.cancelled():
                found += flight.task.result()
        return found

    async def settle(self) -> None:
        """Wait for the polls in flight to end (a stopping poll ends at its next page or call)."""
        tasks = [flight.task for flight in self._tasks.values()]
        self._tasks.clear()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, BaseException) and not isinstance(outcome, StoppingError | asyncio.CancelledError):
                log.warning("a poll in flight ended with %s: %s", type(outcome).__name__, outcome)


def hold_cause_of(error: FatalError) -> HoldCause:
    """Why a fatal answer holds an org: its login refused, or the integration refused."""
    return HoldCause.CREDENTIALS if isinstance(error, AuthenticationError) else HoldCause.REFUSED


@dataclass
class _Flight:
    """A turn in flight (a poll, an org's check, a quarantine's recheck), and the org it is of."""

    org: OrgPoller
    task: asyncio.Future[int]
