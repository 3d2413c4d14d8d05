"""
The permissions guard: whether an extension may place an outside call now.

Outbound routing asks it once per call, just before the first INVITE goes
to a trunk, and tells it when the call is over::

    decision = guard.check(extension, number, dialled=dialled, call_id=call_id)
    if not decision.allowed:
        # refuse with decision.status (403) and decision.reason; play
        # decision.announcement to the caller
        ...
    ...
    guard.release(decision.ticket)      # or let guard.on_call_event see "ended"

:meth:`Guard.check` is synchronous: classes, counters and holds are in
memory (holds are also written to the store and read back by
:meth:`Guard.load` at start).  In order, it:

1. answers a call it has already allowed (a ``call_id`` asked again, as a
   failover to the next trunk does) with the same decision, counted once;
2. lets every emergency call through (Kari's Law: never blocked, limited or
   counted, :func:`pbx.emergency.numbers.is_emergency`);
3. refuses every outside call of a held extension;
4. refuses a number above the extension's class of service;
5. refuses a call over the extension's limits: outside calls up at once,
   international calls outside ``international_hours``, international
   (and premium) calls in any sliding hour.  Each such refusal raises an
   alert (:mod:`pbx.permissions.alerts`) and, with ``limits.hold``, holds
   the extension's outside calls until an administrator releases them.

The decision itself is made without side effects (:meth:`Guard.preview`
asks only that); :meth:`Guard.check` then counts, alerts and holds.
An allowed call takes a ticket: it counts as up until released.  A ticket
never released (a lost end of call) stops counting after
:data:`MAX_CALL_SECONDS`.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from attrs import define, evolve, field, frozen

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pbx.emergency.numbers import is_emergency
from pbx.errors import ConfigError
from pbx.interfaces import IStore
from pbx.permissions.alerts import AlertBoard
from pbx.permissions.classes import ServiceClass, normalise
from pbx.permissions.options import Limits, PermissionsConfig, parse_extension_setting

__all__ = [
    "HOLD_KIND",
    "SETTING_KEY",
    "SETTING_KIND",
    "CallEnd",
    "Decision",
    "Guard",
    "Hold",
    "Verdict",
]

#: The sliding window of ``international_per_hour``, in seconds.
HOUR = 3600.0
#: After this long a ticket nobody released no longer counts.
MAX_CALL_SECONDS = 24 * 3600.0
#: The store's kind for held extensions (owner: the extension).
HOLD_KIND = "permissions.hold"
#: The store's kind for an extension's class and limits set through the API
#: (owner: the extension, key :data:`SETTING_KEY`); they win over the file's.
SETTING_KIND = "permissions.extension"
SETTING_KEY = "setting"
_HOLD_KEY = "hold"


class Verdict(enum.Enum):
    """What the guard says of a call."""

    ALLOW = "allow"
    #: Not this call: above the class, or over a limit.
    REFUSE = "refuse"
    #: None of the extension's outside calls, until an administrator releases it.
    HOLD = "hold"


@frozen
class Decision:
    """
    The guard's answer for one call.

    :ivar number_class: the class of the number called.
    :ivar status: the SIP status to refuse with (403), 0 when allowed.
    :ivar reason: the reason phrase of that response.
    :ivar detail: one line saying why, for logs and the caller's CDR.
    :ivar announcement: the prompt the refused caller hears.
    :ivar ticket: what :meth:`Guard.release` takes when the call ends
        (``""``: nothing to release).
    :ivar emergency: the emergency number called, for an emergency call.
    :ivar limit: the limit that refused the call, if one did.
    """

    verdict: Verdict
    number_class: ServiceClass
    status: int = 0
    reason: str = ""
    detail: str = ""
    announcement: str = ""
    ticket: str = ""
    emergency: str = ""
    limit: str = ""

    @property
    def allowed(self) -> bool:
        """Whether the call may go out."""
        return self.verdict is Verdict.ALLOW


@frozen
class Hold:
    """An extension whose outside calls are held: since when and why."""

    extension: str
    since: float
    limit: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready form (also what the store keeps)."""
        return {
            "extension": self.extension,
            "since": self.since,
            "limit": self.limit,
            "detail": self.detail,
        }


class CallEnd(Protocol):
    """What :meth:`Guard.on_call_event` reads of a call event (:class:`pbx.calls.events.CallEvent`)."""

    @property
    def kind(self) -> str:
        """The event's kind (``ended``)."""

    @property
    def call_id(self) -> str:
        """The call's key: the caller's Call-ID."""


@frozen
class _Ticket:
    extension: str
    since: float
    decision: Decision


@define(eq=False)
class Guard:
    """
    :param config: the ``permissions:`` section.
    :param clock: the time of calls, windows and alerts.
    :param store: holds, and the audit trail of alerts.
    :param emergency: the emergency number a dialled number stands for, or
        None (the emergency section's :meth:`~pbx.emergency.desk.EmergencyDesk.is_emergency`).
    """

    config: PermissionsConfig
    clock: IReactorTime
    store: IStore
    emergency: Callable[[str], str | None] = is_emergency
    alerts: AlertBoard = field(init=False)
    _tickets: dict[str, _Ticket] = field(factory=dict)
    #: extension -> the keys of its tickets
    _live: dict[str, set[str]] = field(factory=dict)
    _international: dict[str, deque[float]] = field(factory=dict)
    _held: dict[str, Hold] = field(factory=dict)
    _ids: Any = field(factory=lambda: itertools.count(1))
    #: The ``permissions:`` section as the file gives it; ``config`` is it
    #: with the API's settings over it.
    _file_config: PermissionsConfig = field(init=False)
    #: extension -> (class, limits) set through the API (None: the file's).
    _settings: dict[str, tuple[ServiceClass | None, Limits | None]] = field(
        factory=dict
    )
    log = Logger()

    def __attrs_post_init__(self) -> None:
        self.alerts = AlertBoard(self.store)
        self._file_config = self.config

    def set_extension(
        self, number: str, service_class: ServiceClass | None, limits: Limits | None
    ) -> None:
        """Give ``number`` this class and limits (None: the file's) from the next call on."""
        if service_class is None and limits is None:
            self._settings.pop(number, None)
        else:
            self._settings[number] = (service_class, limits)
        base = self._file_config
        classes = dict(base.extensions)
        limit_map = dict(base.extension_limits)
        for extension, (own_class, own_limits) in self._settings.items():
            if own_class is not None:
                classes[extension] = own_class
            if own_limits is not None:
                limit_map[extension] = own_limits
        self.config = evolve(base, extensions=classes, extension_limits=limit_map)

    def setting_of(self, number: str) -> tuple[ServiceClass | None, Limits | None]:
        """The class and limits set for ``number`` through the API (None: none)."""
        return self._settings.get(number, (None, None))

    @property
    def file_limits(self) -> Limits:
        """The section's ``limits:`` (what an extension's own limits start from)."""
        return self._file_config.limits

    async def load(self) -> int:
        """Read the held extensions back from the store; how many there are."""
        for owner, _key, data in await self.store.list_items(HOLD_KIND):
            self._held[owner] = Hold(
                owner,
                float(data.get("since", 0.0)),
                str(data.get("limit", "")),
                str(data.get("detail", "")),
            )
        await self._load_settings()
        return len(self._held)

    async def _load_settings(self) -> None:
        """Put the classes and limits set through the API over the file's."""
        for owner, _key, data in await self.store.list_items(SETTING_KIND):
            try:
                service_class, limits = parse_extension_setting(
                    data, "", self._file_config.limits
                )
            except ConfigError as e:
                self.log.warn(
                    "stored permissions of {extension} skipped: {problem}",
                    extension=owner,
                    problem=str(e),
                )
                continue
            self.set_extension(owner, service_class, limits)

    # -- the call path ------------------------------------------------------

    def check(
        self, extension: str, number: str, *, dialled: str = "", call_id: str = ""
    ) -> Decision:
        """
        May ``extension`` call ``number`` out now?

        :param number: the number to be sent (E.164 where the route makes it so).
        :param dialled: the number as the caller dialled it (``9911``), for
            emergency recognition; ``number`` is checked too.
        :param call_id: the call's Call-ID: asked again, the same decision,
            counted once; it is also the ticket.
        """
        if call_id and call_id in self._tickets:
            return self._tickets[call_id].decision
        now = self.clock.seconds()
        decision = self._assess(extension, number, dialled, now)
        number = normalise(number)
        if decision.emergency:
            self.log.info(
                "permissions: {extension} -> {number} is an emergency call ({emergency}): always allowed",
                extension=extension,
                number=number,
                emergency=decision.emergency,
            )
            return decision
        if not decision.allowed:
            self.log.info(
                "permissions: {extension} -> {number} refused: {detail}",
                extension=extension,
                number=number,
                detail=decision.detail,
            )
            if decision.limit:
                self.alerts.raise_alert(
                    extension, decision.limit, number, decision.detail, now
                )
                if decision.verdict is Verdict.HOLD:
                    self._hold(extension, now, decision.limit, decision.detail)
            return decision
        if decision.number_class >= ServiceClass.INTERNATIONAL:
            self._window(extension, now).append(now)
        ticket = call_id or f"permissions-{next(self._ids)}"
        decision = evolve(decision, ticket=ticket)
        self._tickets[ticket] = _Ticket(extension, now, decision)
        self._live.setdefault(extension, set()).add(ticket)
        return decision

    def preview(self, extension: str, number: str, dialled: str = "") -> Decision:
        """
        What :meth:`check` would answer now, changing nothing: no ticket,
        no count, no alert, no hold (for the API's question "may 1001 call
        this number?").
        """
        return self._assess(extension, number, dialled, self.clock.seconds())

    def _assess(
        self, extension: str, number: str, dialled: str, now: float
    ) -> Decision:
        """The decision for a new call, from the state as it is."""
        for candidate in (dialled, number):
            emergency = self.emergency(candidate) if candidate else None
            if emergency:
                return Decision(
                    Verdict.ALLOW,
                    self.config.table.classify(number),
                    emergency=emergency,
                )
        number = normalise(number)
        number_class = self.config.table.classify(number)
        held = self._held.get(extension)
        if held is not None:
            return self._refusal(
                Verdict.HOLD,
                number_class,
                "Outside Calls Held",
                f"outside calls held since a {held.limit} alert",
            )
        own, source = self.config.class_of(extension)
        if not own.allows(number_class):
            return self._refusal(
                Verdict.REFUSE,
                number_class,
                "Call Not Permitted",
                f"a {number_class.label} number; the class of service is {own.label} ({source})",
            )
        limits = self.config.limits_of(extension)
        # A tripped limit refuses this call, or holds every outside call.
        tripped = Verdict.HOLD if limits.hold else Verdict.REFUSE
        if limits.concurrent_outside is not None:
            up = self.outside_calls(extension, now)
            if up >= limits.concurrent_outside:
                return self._refusal(
                    tripped,
                    number_class,
                    "Too Many Outside Calls",
                    f"{up} outside calls up (limit {limits.concurrent_outside})",
                    "concurrent_outside",
                )
        if number_class >= ServiceClass.INTERNATIONAL:
            hours = self.config.international_hours
            if hours is not None and hours.state_at(now) != "open":
                return self._refusal(
                    tripped,
                    number_class,
                    "International Calls Closed",
                    "an international call outside international_hours",
                    "international_hours",
                )
            made = self.international_calls(extension, now)
            if (
                limits.international_per_hour is not None
                and made >= limits.international_per_hour
            ):
                return self._refusal(
                    tripped,
                    number_class,
                    "International Call Limit",
                    f"{made} international calls in the last hour (limit {limits.international_per_hour})",
                    "international_per_hour",
                )
        return Decision(Verdict.ALLOW, number_class)

    def release(self, ticket: str) -> None:
        """The call of ``ticket`` is over: it no longer counts (a ticket unknown or released: nothing)."""
        gone = self._tickets.pop(ticket, None)
        if gone is not None:
            keys = self._live[gone.extension]
            keys.discard(ticket)
            if not keys:
                del self._live[gone.extension]

    def on_call_event(self, event: CallEnd) -> None:
        """A call event subscriber: an ``ended`` call releases its ticket."""
        if event.kind == "ended":
            self.release(event.call_id)

    # -- counters ------------------------------------------------------------

    def outside_calls(self, extension: str, now: float | None = None) -> int:
        """How many outside calls ``extension`` has up (tickets older than a day are dropped)."""
        now = self.clock.seconds() if now is None else now
        for key in list(self._live.get(extension, ())):
            ticket = self._tickets[key]
            if now - ticket.since > MAX_CALL_SECONDS:
                self.log.warn(
                    "permissions: the call {ticket} of {extension} was never released; no longer counted",
                    ticket=key,
                    extension=extension,
                )
                self.release(key)
        return len(self._live.get(extension, ()))

    def international_calls(self, extension: str, now: float | None = None) -> int:
        """How many international calls ``extension`` made in the last hour."""
        return len(
            self._window(extension, self.clock.seconds() if now is None else now)
        )

    def _window(self, extension: str, now: float) -> deque[float]:
        window = self._international.setdefault(extension, deque())
        while window and window[0] <= now - HOUR:
            window.popleft()
        return window

    def usage(self) -> list[dict[str, Any]]:
        """Every extension with an outside call up, an international call this hour or a hold."""
        now = self.clock.seconds()
        names = {e for e in list(self._live) if self.outside_calls(e, now)}
        names |= set(self._held)
        names |= {e for e in list(self._international) if self._window(e, now)}
        return [
            {
                "extension": e,
                "outside_calls": self.outside_calls(e, now),
                "international_last_hour": self.international_calls(e, now),
                "held": e in self._held,
            }
            for e in sorted(names)
        ]

    # -- holds -----------------------------------------------------------------

    def holds(self) -> list[Hold]:
        """The held extensions, by number."""
        return [self._held[e] for e in sorted(self._held)]

    async def release_hold(self, extension: str) -> bool:
        """Let ``extension`` call out again; whether it was held."""
        if self._held.pop(extension, None) is None:
            return False
        await self.store.delete_item(HOLD_KIND, extension, _HOLD_KEY)
        self.log.info(
            "permissions: outside calls of {extension} released", extension=extension
        )
        return True

    def _hold(self, extension: str, now: float, limit: str, detail: str) -> None:
        if extension in self._held:
            return
        hold = Hold(extension, now, limit, detail)
        self._held[extension] = hold
        self.log.warn(
            "permissions: outside calls of {extension} held after {limit}",
            extension=extension,
            limit=limit,
        )
        d = self.store.put_item(HOLD_KIND, extension, _HOLD_KEY, hold.as_dict())
        d.addErrback(
            lambda f: self.log.failure(
                "storing the hold of {extension} failed", f, extension=extension
            )
        )

    # -- refusals --------------------------------------------------------------

    def _refusal(
        self,
        verdict: Verdict,
        number_class: ServiceClass,
        reason: str,
        detail: str,
        limit: str = "",
    ) -> Decision:
        return Decision(
            verdict,
            number_class,
            status=403,
            reason=reason,
            detail=detail,
            announcement=self.config.announcement,
            limit=limit,
        )
