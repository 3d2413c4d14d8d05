"""
Calls the switch places for applications: :meth:`Placing.originate` rings
an extension's phones, :meth:`Placing.dial` connects an application's caller
to an extension or a ring group, and :meth:`Placing.endpoint_media` makes
the media of the calls pbx itself answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from attrs import define, evolve

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.calls.dial import Dial, GroupDialling
from pbx.calls.endpoint_media import EndpointMedia, MediaServices
from pbx.calls.events import CallEvents
from pbx.calls.forks import Outcome, Rung
from pbx.calls.groups import RingGroup
from pbx.calls.originated import Originated
from pbx.calls.outbound import OutboundCall, check_extra_headers
from pbx.calls.reach import Reach
from pbx.calls.routing import Routing
from pbx.calls.signalling import LegServices
from pbx.config import Config
from pbx.media.media_clock import MediaClock
from pbx.records import Binding, ExtensionRecord


@define(eq=False)
class Placing:
    """
    Places calls for applications.

    :ivar relay: gives the RTP port allocator (``relay.allocator``).
    :ivar media: what terminated calls need; None when no media services run.
    :ivar media_clock: the one 20 ms timer of terminated calls' media.
    :ivar lookup: an extension's record by number.
    :ivar contacts: an extension's registered phones.
    :ivar track: lists a placed call until it ends.
    :ivar call_ended: told when a placed call is over.
    :ivar group_to_dial: the ring group dialled as a number, with its members to ring.
    :ivar reach: who of a group can be rung now.
    """

    services: LegServices
    events: CallEvents
    relay: Any
    media: MediaServices | None
    media_clock: Callable[[], MediaClock]
    clock: Any
    config: Config
    media_address: str
    lookup: Callable[[str], Deferred[ExtensionRecord | None]]
    contacts: Callable[[str], list[Binding]]
    routing: Routing
    track: Callable[[OutboundCall], None]
    call_ended: Callable[[Any], None]
    group_to_dial: Callable[[str, str], tuple[RingGroup, list[str]] | None]
    reach: Callable[[], Reach]
    log = Logger()

    def endpoint_media(self, caller: str, caller_name: str, callee: str) -> Callable[[Callable[[str], None]], EndpointMedia]:
        """What makes a terminated call's media, given the call's hang-up callback."""
        assert self.media is not None
        services = evolve(self.media, reactor=self.clock, ports=self.relay.allocator,
                          media_clock=self.media_clock(), interface=self.config.rtp.interface,
                          address=self.media_address)
        return lambda on_hangup: EndpointMedia(services, caller, caller_name, callee, on_hangup)

    def place(self, caller: str, caller_name: str, callee: str, bindings: list[Binding], timeout: float,
              on_ringing: Callable[[], None] | None = None,
              headers: Sequence[tuple[str, str]] = ()) -> OutboundCall:
        """Ring ``bindings`` of extension ``callee`` for an application; the call is tracked until it ends."""
        call = OutboundCall(self.services, caller=caller, callee=callee, caller_name=caller_name,
                            media=self.endpoint_media(caller, caller_name, callee),
                            events=self.events, on_end=self.call_ended, on_ringing=on_ringing,
                            headers=headers)
        call.start(bindings, timeout)
        if call.state != "ended":
            self.track(call)
        return call

    def originate(self, number: str, *, caller: str, caller_name: str = "",
                  timeout: float | None = None, headers: Sequence[tuple[str, str]] = ()) -> Deferred[Originated]:
        """
        Ring extension ``number``'s phones (see :meth:`pbx.interfaces.IPBX.originate`).
        Cancelling the Deferred stops the ringing.

        :raises ValueError: if one of ``headers`` is not a header pbx may add.
        """
        extra = check_extra_headers(headers)
        ring_timeout = self.config.calls.ring_timeout if timeout is None else timeout
        placed: list[OutboundCall] = []

        def cancel(d: Deferred[Originated]) -> None:
            for call in placed:
                call.hang_up("a", "cancelled")

        async def ring() -> Originated:
            record = await self.lookup(number)
            if record is None or not record.enabled or self.media is None:
                return Originated("not_found" if self.media is not None else "failed")
            bindings = self.contacts(number)
            if not bindings:
                return Originated("unavailable")
            call = self.place(caller, caller_name, number, bindings, ring_timeout, headers=extra)
            placed.append(call)
            rung: Rung = await call.outcome
            if rung.outcome is not Outcome.ANSWERED:
                return Originated(rung.outcome.value)
            return Originated("answered", call.channel, call.ended,
                              lambda: call.hang_up("a", "hung up"), call.call_id)

        result: Deferred[Originated] = Deferred(cancel)
        Deferred.fromCoroutine(ring()).addCallbacks(result.callback, self._originate_failed, errbackArgs=(result,))
        return result

    def _originate_failed(self, failure: Failure, result: Deferred[Originated]) -> None:
        if not failure.check(CancelledError):
            self.log.failure("originate failed", failure)
        if not result.called:
            result.callback(Originated("failed"))

    def dial(self, channel: Any, number: str, *, caller: str | None = None, caller_name: str | None = None,
             timeout: float | None = None) -> Deferred[str]:
        """
        Connect the caller on ``channel`` to extension ``number`` (see
        :meth:`pbx.interfaces.IPBX.dial`); fails with
        :class:`~pbx.media.channel.HungUp` if the caller hangs up first.
        """
        shown = channel.caller if caller is None else caller
        name = channel.caller_name if caller_name is None else caller_name
        ring_timeout = self.config.calls.ring_timeout if timeout is None else timeout
        attempt = Dial(
            self.routing,
            lambda callee, bindings, on_ringing: self.place(shown, name, callee, bindings, ring_timeout,
                                                            on_ringing),
            channel, caller=shown, caller_name=name, timeout=ring_timeout,
            groups=GroupDialling(
                lambda number: self.group_to_dial(number, shown), self.reach().member,
                lambda callee, bindings, on_ringing, seconds: self.place(shown, name, callee, bindings, seconds,
                                                                         on_ringing),
                self.clock),
        )
        return Deferred.fromCoroutine(attempt.run(number))
